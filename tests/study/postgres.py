"""A throw-away PostgreSQL server for the study tests, from the distribution's binaries (Debian's
``postgresql`` package: /usr/lib/postgresql/<version>/bin). Unix socket only, no TCP port, no fsync.

As root (CI machines), the server runs as the ``postgres`` user the package creates, since PostgreSQL
refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid


def find_binaries() -> str | None:
    """The folder holding initdb and pg_ctl, newest version first; None if PostgreSQL is not installed."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if os.path.exists(os.path.join(folder, "initdb")):
            return folder
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class PostgresServer:
    def __init__(self, binaries: str):
        self.binaries = binaries
        self.root = tempfile.mkdtemp(prefix="egoframe-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = 5432
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.root, 0o755)

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([*self.prefix, os.path.join(self.binaries, tool), *args], capture_output=True,
                                text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {(result.stderr or result.stdout)[-2000:]}")

    def start(self) -> "PostgresServer":
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "egoframe", "-E", "UTF8", "--no-sync")
        options = (f"-k {self.root} -p {self.port} -c listen_addresses='' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", os.path.join(self.root, "log"), "-w",
                  "-t", "60", "start")
        return self

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://egoframe@/{database}?host={self.root}&port={self.port}"

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(host=self.root, port=self.port, user="egoframe", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
