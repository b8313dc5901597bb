"""Building a study from a generation set: samples, methods, raters and each rater's shuffled tasks."""

from __future__ import annotations

import itertools
import math
import random
import secrets
from collections import Counter
from dataclasses import asdict, dataclass, field

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from egoframe.errors import ConfigError, InputError
from egoframe.study import db
from egoframe.study.generation_set import GenerationSet, check_name, clean_text, read_generation_set
from egoframe.study.images import CleanImage, clean_image_file
from egoframe.study.security import new_token, token_hash

INTERFACES = ("best", "pairwise", "describe")
# A describe screen's two answers, in the paper's order (papers/000 Fig. 11: "Aligned 1 / Not Aligned 2").
DESCRIBE_ANSWERS = ("Aligned", "Not aligned")
QUESTIONS = {
    # papers/001 Sec. 4: "select the image that best aligns with the provided action label while preserving
    # the most contextual information from the input frame"; the action label, not the enriched description,
    # is shown because baselines only read labels (papers/000 Sec. F.6).
    "best": "Which image best shows the action done, while keeping the most of the input frame's scene?",
    "pairwise": "Which of the two images better shows the action done, while keeping the input frame's scene?",
    # papers/000 Fig. 11 and Sec. F.6: the study of the enriched descriptions, input and target frames shown.
    "describe": "The first image is taken before the action and the second during it. Read the action "
                "description carefully: does it align with the two images?",
}
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class StudyConfig:
    name: str
    interface: str = "best"
    title: str = ""
    question: str = ""
    raters: int | list[str] = 5  # a count (labels rater-01..) or the labels themselves
    ratings_per_sample: int | None = None  # None: every rater rates every sample
    attention_checks: int = 2  # per rater
    reference: str | None = None  # pairwise: compare every method with this one; None: all pairs
    show_description: bool = False  # best/pairwise show the label only, as in the paper (describe: always)
    seed: int = 0
    methods: list[str] | None = None

    def validate(self) -> "StudyConfig":
        check_name(self.name, "study name")
        if self.interface not in INTERFACES:
            raise ConfigError(f"interface must be one of {', '.join(INTERFACES)}, got {self.interface!r}")
        n = self.raters if isinstance(self.raters, int) else len(self.raters)
        if n < 1:
            raise ConfigError("a study needs at least one rater")
        if self.ratings_per_sample is not None and not 1 <= self.ratings_per_sample <= n:
            raise ConfigError(f"ratings_per_sample must be in 1..{n} (the number of raters)")
        if self.attention_checks < 0:
            raise ConfigError("attention_checks must be >= 0")
        clean_text(self.title, "title", 200)
        clean_text(self.question, "question", 500)
        return self

    def rater_labels(self) -> list[str]:
        if isinstance(self.raters, int):
            return [f"rater-{i + 1:02d}" for i in range(self.raters)]
        labels = [check_name(r, "rater label") for r in self.raters]
        dupes = [k for k, v in Counter(labels).items() if v > 1]
        if dupes:
            raise ConfigError(f"duplicate rater label {dupes[0]!r}")
        return labels


@dataclass
class Invite:
    label: str
    token: str  # shown once: the database keeps only its hash

    def link(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/r/{self.token}"


@dataclass
class CreatedStudy:
    name: str
    n_samples: int
    methods: list[str]
    invites: list[Invite] = field(default_factory=list)


def create_study(database, generation_set: str | GenerationSet, config: StudyConfig,
                 confine: bool = False) -> CreatedStudy:
    """Create study ``config.name`` in ``database`` (path or URL) from a generation set folder.

    confine: refuse image paths outside the folder (for uploaded, untrusted sets)."""
    config.validate()
    labels = config.rater_labels()
    describe = config.interface == "describe"
    gen = generation_set if isinstance(generation_set, GenerationSet) else read_generation_set(
        generation_set, methods=config.methods, confine=confine, kind="texts" if describe else "images")
    if describe and config.attention_checks and len({s.action for s in gen.samples}) < 2:
        raise InputError("a describe study's attention checks show another action's description: the set needs "
                         "at least two different actions, or use 0 checks")
    if config.interface == "pairwise" and len(gen.methods) < 2:
        raise InputError("a pairwise study needs at least two methods")
    if config.reference is not None and config.reference not in gen.methods:
        raise InputError(f"reference method {config.reference!r} is not among {', '.join(gen.methods)}")
    if config.attention_checks and not any(s.target for s in gen.samples):
        raise InputError("attention checks need ground-truth targets: fill the target column or use 0 checks")
    cleaned = {path: clean_image_file(path) for s in gen.samples
               for path in [s.input, *([s.target] if s.target else []), *s.outputs.values()]}

    engine = db.make_engine(database, create=True)
    with db.sessions(engine)() as session:
        if session.scalar(select(db.Study).where(db.Study.name == config.name)) is not None:
            raise InputError(f"a study named {config.name!r} already exists in {db.database_url(database)}")
        images: dict[str, db.Image] = {}
        for path, clean in cleaned.items():
            images[path] = _image_row(session, clean)
        study = db.Study(name=config.name, title=config.title or config.name, interface=config.interface,
                         question=config.question or QUESTIONS[config.interface], config=asdict(config))
        session.add(study)
        methods = [db.Method(study=study, name=m, position=i) for i, m in enumerate(gen.methods)]
        session.add_all(methods)
        session.flush()
        for s in gen.samples:
            row = db.Sample(study_id=study.id, sample_key=s.sample_id, action=s.action, description=s.description,
                            input_image_id=images[s.input].id,
                            target_image_id=images[s.target].id if s.target else None)
            session.add(row)
            session.flush()
            for m in methods:
                if describe:
                    session.add(db.SampleText(sample_id=row.id, method_id=m.id, text=s.texts[m.name]))
                else:
                    session.add(db.Output(sample_id=row.id, method_id=m.id, image_id=images[s.outputs[m.name]].id))
        session.flush()
        invites = []
        rng = random.Random(config.seed)
        assignment = _assign_samples(len(gen.samples), len(labels), config.ratings_per_sample, rng)
        for label, sample_indices in zip(labels, assignment):
            invites.append(_add_rater(session, study, label, sample_indices, rng))
        session.commit()
    engine.dispose()
    return CreatedStudy(name=config.name, n_samples=len(gen.samples), methods=gen.methods, invites=invites)


def add_rater(database_or_session, study_name: str, label: str) -> Invite:
    """Invite one more rater; they get as many samples as the average rater, the least-rated ones first."""
    label = check_name(label, "rater label")
    if isinstance(database_or_session, Session):
        return _add_rater_in(database_or_session, study_name, label)
    engine = db.make_engine(database_or_session)
    try:
        with db.sessions(engine)() as session:
            return _add_rater_in(session, study_name, label)
    finally:
        engine.dispose()


def _add_rater_in(session: Session, study_name: str, label: str) -> Invite:
    study = session.scalar(select(db.Study).where(db.Study.name == study_name))
    if study is None:
        raise InputError(f"no study named {study_name!r}")
    if session.scalar(select(db.Rater).where(db.Rater.study_id == study.id, db.Rater.label == label)):
        raise InputError(f"rater {label!r} already exists in study {study_name!r}")
    samples = session.scalars(select(db.Sample.id).where(db.Sample.study_id == study.id).order_by(db.Sample.id)).all()
    config = StudyConfig(**study.config)
    # Coverage counts each sample once per rater, whatever the number of pairs shown for it.
    coverage = Counter(session.execute(
        select(db.Task.sample_id, db.Task.rater_id).join(db.Rater)
        .where(db.Rater.study_id == study.id, db.Task.is_check.is_(False)).distinct()).scalars().all())
    n_raters = session.scalar(select(func.count()).select_from(db.Rater).where(db.Rater.study_id == study.id))
    rng = random.Random(secrets.randbits(64))
    if config.ratings_per_sample is None:
        chosen = list(range(len(samples)))
    else:
        per_rater = max(1, math.ceil(len(samples) * config.ratings_per_sample / max(n_raters, 1)))
        order = sorted(range(len(samples)), key=lambda i: (coverage.get(samples[i], 0), rng.random()))
        chosen = sorted(order[:per_rater])
    invite = _add_rater(session, study, label, chosen, rng)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise InputError(f"rater {label!r} already exists in study {study_name!r}") from None
    return invite


def _image_row(session: Session, clean: CleanImage) -> db.Image:
    row = session.scalar(select(db.Image).where(db.Image.sha256 == clean.sha256))
    if row is None:
        row = db.Image(public_id=secrets.token_hex(16), sha256=clean.sha256, width=clean.width,
                       height=clean.height, png=clean.png)
        session.add(row)
        session.flush()
    return row


def _assign_samples(n_samples: int, n_raters: int, per_sample: int | None, rng: random.Random) -> list[list[int]]:
    """Sample indices per rater; with ``per_sample`` = k each sample goes to k raters and loads differ by <= 1."""
    if per_sample is None:
        return [list(range(n_samples)) for _ in range(n_raters)]
    order = list(range(n_samples))
    rng.shuffle(order)
    out: list[list[int]] = [[] for _ in range(n_raters)]
    slot = 0
    for i in order:
        for j in range(per_sample):  # k consecutive raters (mod R): k distinct raters for k <= R
            out[(slot + j) % n_raters].append(i)
        slot += per_sample
    return [sorted(x) for x in out]


def _add_rater(session: Session, study: db.Study, label: str, sample_indices: list[int],
               rng: random.Random) -> Invite:
    token = new_token()
    rater = db.Rater(study_id=study.id, label=label, token_sha256=token_hash(token))
    session.add(rater)
    session.flush()
    samples = session.scalars(select(db.Sample).where(db.Sample.study_id == study.id).order_by(db.Sample.id)).all()
    methods = list(study.methods)
    config = StudyConfig(**study.config)
    if study.interface == "describe":
        return _add_describe_screens(session, rater, token, samples, methods, sample_indices, config, rng)
    outputs = {(o.sample_id, o.method_id): o.image_id
               for o in session.scalars(select(db.Output).join(db.Sample).where(db.Sample.study_id == study.id))}
    screens: list[tuple[db.Sample, list[db.Method | None], bool]] = []
    for i in sample_indices:
        sample = samples[i]
        if study.interface == "best":
            order = methods[:]
            rng.shuffle(order)  # per rater and per sample: no position bias
            screens.append((sample, order, False))
        else:
            for a, b in _pairs(methods, config.reference):
                screens.append((sample, [a, b] if rng.random() < 0.5 else [b, a], False))
    rng.shuffle(screens)
    with_target = [s for s in samples if s.target_image_id is not None]
    n_options = len(methods) if study.interface == "best" else 2
    for _ in range(config.attention_checks if with_target else 0):
        check = (rng.choice(with_target), [None] * n_options, True)
        # Never first: a rater should meet a normal screen before any check.
        screens.insert(rng.randint(min(1, len(screens)), len(screens)), check)
    for position, (sample, order, is_check) in enumerate(screens, start=1):
        task = db.Task(rater_id=rater.id, position=position, sample_id=sample.id, is_check=is_check)
        session.add(task)
        session.flush()
        if is_check:
            # The obvious answer: the ground-truth target among copies of the unchanged input frame.
            correct = rng.randrange(n_options)
            for slot in range(n_options):
                image = sample.target_image_id if slot == correct else sample.input_image_id
                session.add(db.TaskOption(task_id=task.id, slot=slot, image_id=image, correct=slot == correct))
        else:
            for slot, method in enumerate(order):
                session.add(db.TaskOption(task_id=task.id, slot=slot, method_id=method.id,
                                          image_id=outputs[(sample.id, method.id)]))
    return Invite(label=label, token=token)


def _add_describe_screens(session: Session, rater: db.Rater, token: str, samples: list[db.Sample],
                          methods: list[db.Method], sample_indices: list[int], config: StudyConfig,
                          rng: random.Random) -> Invite:
    """papers/000 Fig. 11: one screen per (sample, description source) - input, target, one description,
    "Aligned" / "Not aligned". The source is never shown; sources and samples are shuffled together.

    An attention check shows a sample's frames with the description of a sample of *another* action: its
    obvious answer is "Not aligned"."""
    texts = {(t.sample_id, t.method_id): t.text
             for t in session.scalars(select(db.SampleText).join(db.Sample).where(db.Sample.study_id == rater.study_id))}
    screens: list[tuple[db.Sample, db.Method | None, str]] = [
        (samples[i], m, texts[(samples[i].id, m.id)]) for i in sample_indices for m in methods]
    rng.shuffle(screens)
    for _ in range(config.attention_checks):
        sample = rng.choice(samples)
        others = [x for x in samples if x.action != sample.action]
        if not others:
            break  # create_study refuses checks on a one-action set; a rater added later just gets none
        text = texts[(rng.choice(others).id, rng.choice(methods).id)]
        screens.insert(rng.randint(min(1, len(screens)), len(screens)), (sample, None, text))
    for position, (sample, method, text) in enumerate(screens, start=1):
        task = db.Task(rater_id=rater.id, position=position, sample_id=sample.id, is_check=method is None)
        session.add(task)
        session.flush()
        session.add(db.TaskText(task_id=task.id, text=text))
        for slot in range(len(DESCRIBE_ANSWERS)):
            # Both answers name the source judged; the image is the target (the rater's page shows it).
            session.add(db.TaskOption(task_id=task.id, slot=slot, method_id=method.id if method else None,
                                      image_id=sample.target_image_id,
                                      correct=(slot == 1) if method is None else None))
    return Invite(label=rater.label, token=token)


def _pairs(methods: list[db.Method], reference: str | None) -> list[tuple[db.Method, db.Method]]:
    if reference is None:
        return list(itertools.combinations(methods, 2))
    ref = next(m for m in methods if m.name == reference)
    return [(ref, m) for m in methods if m is not ref]
