"""The study database: SQLAlchemy models and engine setup (SQLite in WAL mode, or PostgreSQL by URL).

Everything a server needs lives in the database, images included, so several server processes behind a
load balancer share one PostgreSQL and need no shared disk. Integrity rules are constraints, not code:
one vote per task (``votes.task_id`` unique) is what makes a replayed or racing vote fail.
"""

from __future__ import annotations

import datetime as dt
import os

from sqlalchemy import (
    JSON, Boolean, DateTime, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint, create_engine, event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from egoframe.errors import InputError


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Setting(Base):
    """Server-wide values shared by all processes: the signing secret and the admin password hash."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Image(Base):
    __tablename__ = "images"
    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)  # random: URLs reveal nothing
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    png: Mapped[bytes] = mapped_column(LargeBinary)


class Study(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    # "best" (pick one of N) | "pairwise" (A/B) | "describe" (does a description fit input + target: yes/no)
    interface: Mapped[str] = mapped_column(String(16))
    question: Mapped[str] = mapped_column(Text)
    config: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    methods: Mapped[list["Method"]] = relationship(back_populates="study", order_by="Method.position")
    raters: Mapped[list["Rater"]] = relationship(back_populates="study", order_by="Rater.id")


class Method(Base):
    __tablename__ = "methods"
    __table_args__ = (UniqueConstraint("study_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    name: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)  # column order of the generation set: the table's row order
    study: Mapped[Study] = relationship(back_populates="methods")


class Sample(Base):
    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("study_id", "sample_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    sample_key: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    input_image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    target_image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"), nullable=True)
    input_image: Mapped[Image] = relationship(foreign_keys=[input_image_id])


class Output(Base):
    __tablename__ = "outputs"
    __table_args__ = (UniqueConstraint("sample_id", "method_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id"))
    method_id: Mapped[int] = mapped_column(ForeignKey("methods.id"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))


class SampleText(Base):
    """The description one source wrote for one sample (``describe`` studies, papers/000 Fig. 11)."""

    __tablename__ = "sample_texts"
    __table_args__ = (UniqueConstraint("sample_id", "method_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id"))
    method_id: Mapped[int] = mapped_column(ForeignKey("methods.id"))
    text: Mapped[str] = mapped_column(Text)


class Rater(Base):
    __tablename__ = "raters"
    __table_args__ = (UniqueConstraint("study_id", "label"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    label: Mapped[str] = mapped_column(String(64))
    # Only the hash of the invite token is stored: a leaked database copy opens no rater's page.
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    study: Mapped[Study] = relationship(back_populates="raters")
    tasks: Mapped[list["Task"]] = relationship(back_populates="rater", order_by="Task.position")


class Task(Base):
    """One screen of one rater: a sample and its options in this rater's shuffled order."""

    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("rater_id", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # 1-based, the rater's order
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id"))
    is_check: Mapped[bool] = mapped_column(Boolean, default=False)  # attention check
    rater: Mapped[Rater] = relationship(back_populates="tasks")
    sample: Mapped[Sample] = relationship()
    options: Mapped[list["TaskOption"]] = relationship(order_by="TaskOption.slot", back_populates="task")
    vote: Mapped["Vote | None"] = relationship(back_populates="task", uselist=False)
    text: Mapped["TaskText | None"] = relationship(uselist=False)


class TaskText(Base):
    """The description a ``describe`` screen shows, frozen when the screen is made (checks show another
    sample's description, so it cannot be looked up from the sample)."""

    __tablename__ = "task_texts"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), unique=True)
    text: Mapped[str] = mapped_column(Text)


class TaskOption(Base):
    __tablename__ = "task_options"
    __table_args__ = (UniqueConstraint("task_id", "slot"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    slot: Mapped[int] = mapped_column(Integer)  # 0 -> "A", 1 -> "B", ...
    method_id: Mapped[int | None] = mapped_column(ForeignKey("methods.id"), nullable=True)  # None on checks
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    correct: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # checks only: the obvious answer
    task: Mapped[Task] = relationship(back_populates="options")
    method: Mapped[Method | None] = relationship()
    image: Mapped[Image] = relationship()


class Vote(Base):
    __tablename__ = "votes"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), unique=True)  # no double votes, by constraint
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    slot: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    task: Mapped[Task] = relationship(back_populates="vote")


class LoginFailure(Base):
    """A wrong admin password: counted per client over a sliding window by every server process alike."""

    __tablename__ = "login_failures"
    id: Mapped[int] = mapped_column(primary_key=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


def database_url(target: str | os.PathLike) -> str:
    """A SQLAlchemy URL for ``target``: a URL as given, or a path to a SQLite file."""
    target = os.fspath(target)
    if "://" in target:
        if not target.startswith(("sqlite", "postgresql")):
            raise InputError(f"database URL {target!r}: only sqlite:/// and postgresql:// are supported")
        if target.startswith(("postgresql://", "postgres://")):
            # SQLAlchemy's default PostgreSQL driver is psycopg2; the one installed with egoframe is psycopg 3.
            target = "postgresql+psycopg://" + target.split("://", 1)[1]
        return target
    return "sqlite:///" + os.path.abspath(target)


def make_engine(target: str | os.PathLike, create: bool = False) -> Engine:
    """Engine for a study database; SQLite gets WAL (readers never block the writer) and a busy timeout."""
    url = database_url(target)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if not create and path not in ("", ":memory:") and not os.path.exists(path):
            raise InputError(f"no study database at {path}: create one with `egoframe study create`")
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=20,
                               max_overflow=40)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        try:
            engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            raise InputError(f"{exc.name} is needed for PostgreSQL: pip install 'psycopg[binary]'") from None
    if create:
        Base.metadata.create_all(engine)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps the file consistent
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def sessions(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
