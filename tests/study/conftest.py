"""Study fixtures: a small generation set of drawn frames, a study database, and a test client."""

from __future__ import annotations

import csv
import os
import re

import pytest

METHODS = ("lego", "ip2p", "sd-edit")
COLORS = {"lego": (40, 160, 60), "ip2p": (200, 60, 60), "sd-edit": (60, 60, 200)}


def pytest_configure(config):
    # Registered here (not in pyproject) so these folders stay self-contained under --strict-markers.
    config.addinivalue_line("markers", "browser: drives headless Chromium (/usr/bin/chromium) through Playwright")


def draw_frame(kind: str, index: int, size: int = 64):
    """A recognisable frame: a counter, a cup; the target has the cup lifted; outputs are tinted."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), (230 - 10 * index % 60, 220, 200))
    d = ImageDraw.Draw(im)
    d.rectangle([0, size * 0.6, size, size], fill=(150, 110, 70))  # counter
    lifted = kind != "input"
    top = size * (0.25 if lifted else 0.45)
    d.rectangle([size * 0.4, top, size * 0.6, top + size * 0.2], fill=COLORS.get(kind, (240, 240, 240)))
    if kind != "input":
        d.ellipse([size * 0.55, top, size * 0.8, top + size * 0.25], fill=(230, 180, 150))  # the hand
    d.text((2, 2), str(index), fill=(0, 0, 0))
    return im


def make_generation_set(root, n_samples: int = 6, methods=METHODS, extra_column: bool = True, targets: bool = True):
    os.makedirs(root, exist_ok=True)
    header = ["sample_id", "action", "description", "input", "target", *methods]
    if extra_column:
        header += ["clip_score", "split"]  # evaluation writes such columns; the reader must skip them
    rows = []
    for i in range(n_samples):
        sid = f"s{i:03d}"
        os.makedirs(os.path.join(root, "frames", sid), exist_ok=True)
        row = {"sample_id": sid, "action": ["take cup", "put cup", "open drawer"][i % 3],
               "description": f"The right hand lifts the cup number {i} from the counter.",
               "input": f"frames/{sid}/input.png", "target": f"frames/{sid}/target.png" if targets else ""}
        draw_frame("input", i).save(os.path.join(root, row["input"]))
        if targets:
            draw_frame("target", i).save(os.path.join(root, row["target"]))
        for m in methods:
            row[m] = f"frames/{sid}/{m}.png"
            draw_frame(m, i).save(os.path.join(root, row[m]))
        if extra_column:
            row.update(clip_score=f"{0.2 + i / 100:.3f}", split="test")
        rows.append(row)
    with open(os.path.join(root, "samples.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the session. Skipped where PostgreSQL is not installed, unless
    EGOFRAME_REQUIRE_POSTGRES=1 (CI installs it and sets that), where its absence fails instead."""
    from .postgres import PostgresServer, find_binaries

    binaries = find_binaries()
    if binaries is None:
        if os.environ.get("EGOFRAME_REQUIRE_POSTGRES") == "1":
            pytest.fail("EGOFRAME_REQUIRE_POSTGRES=1 but no PostgreSQL binaries: run .ci/install-postgres.sh")
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/install-postgres.sh)")
    server = PostgresServer(binaries).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_target(request, tmp_path):
    """A fresh, empty study database: a SQLite file, then a database on a real PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "study.db")
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def generation_set(tmp_path):
    return make_generation_set(str(tmp_path / "genset"))


@pytest.fixture
def study(tmp_path, generation_set):
    """A pick-the-best study: 3 raters, each sees all 6 samples + 2 attention checks."""
    from egoframe.study import StudyConfig, create_study

    database = str(tmp_path / "study.db")
    created = create_study(database, generation_set, StudyConfig(name="ego4d", raters=3, attention_checks=2, seed=1))
    return database, created


@pytest.fixture
def client(study):
    from fastapi.testclient import TestClient

    from egoframe.study.server import ServerSettings, create_app

    database, _ = study
    with TestClient(create_app(ServerSettings(database=database)), follow_redirects=False) as c:
        yield c


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


def letters_of(html: str) -> list[str]:
    return re.findall(r'name="choice" value="([A-Z])"', html)


class LiveServer:
    """The study app under uvicorn in a thread, on 127.0.0.1 and a free port (loopback only)."""

    def __init__(self, database: str):
        import socket
        import threading

        import uvicorn

        from egoframe.study.server import ServerSettings, create_app

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(create_app(ServerSettings(database=database)), log_level="warning",
                                backlog=256, timeout_keep_alive=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self):
        import time

        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("study server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.socket.close()
