"""`egoframe study ...`: create a user study, invite raters, serve it, and read the results.

Thin commands over egoframe.study; FastAPI, SQLAlchemy and uvicorn are imported inside the commands.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from egoframe.errors import InputError

DB_HELP = "Study database: a SQLite file path, or a postgresql:// URL."


def register(app: typer.Typer) -> None:
    study = typer.Typer(help="User studies of generated frames: create, serve, results.", no_args_is_help=True)
    study.command("create", help="Create a study from a generation set folder (samples.csv + images).")(create)
    study.command("invite", help="Invite one more rater to a study; prints their secret link.")(invite)
    study.command("admin-password", help="Set the password of the server's admin pages.")(admin_password)
    study.command("serve", help="Run the study web server.")(serve)
    study.command("results", help="Win rates, intervals, agreement, exclusions: table, CSVs and plot.")(results)
    study.command("export", help="Write every vote of a study to CSV.")(export)
    app.add_typer(study, name="study")


def create(
    generation_set: Path = typer.Argument(..., help="Folder with samples.csv (see docs/formats.md)."),
    db: str = typer.Option("study.db", "--db", help=DB_HELP),
    name: str = typer.Option(..., "--name", help="Study name, e.g. ego4d."),
    interface: str = typer.Option("best", "--interface", help="best: pick one of N; pairwise: A/B; describe: does each "
                                   "description (the --methods text columns) fit input + target (papers/000 Fig. 11)."),
    raters: int = typer.Option(5, "--raters", min=1, help="Number of raters (labels rater-01, ...)."),
    rater_labels: Optional[str] = typer.Option(None, "--rater-labels", help="Comma-separated labels instead."),
    ratings_per_sample: Optional[int] = typer.Option(None, "--ratings-per-sample", min=1,
                                                     help="Raters per sample (default: every rater, every sample)."),
    attention_checks: int = typer.Option(2, "--attention-checks", min=0, help="Attention checks per rater."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Pairwise: compare every method with this one."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated method columns (default: all; describe: the description column)."),
    title: str = typer.Option("", "--title", help="Title shown to raters."),
    show_description: bool = typer.Option(False, "--show-description", help="Show the enriched description too."),
    seed: int = typer.Option(0, "--seed", help="Seed of the shuffles."),
    invites: Path = typer.Option(Path("invites.csv"), "--invites", help="Where to write the secret links."),
    base_url: str = typer.Option("http://127.0.0.1:8000", "--base-url", help="Public address of the server."),
) -> None:
    from egoframe.study.create import StudyConfig, create_study

    config = StudyConfig(
        name=name, interface=interface, title=title,
        raters=[x.strip() for x in rater_labels.split(",") if x.strip()] if rater_labels else raters,
        ratings_per_sample=ratings_per_sample, attention_checks=attention_checks, reference=reference,
        methods=[x.strip() for x in methods.split(",") if x.strip()] if methods else None,
        show_description=show_description, seed=seed,
    )
    created = create_study(db, str(generation_set), config)
    _write_invites(invites, [(i.label, i.link(base_url)) for i in created.invites])
    typer.echo(f"study {created.name}: {created.n_samples} samples x {len(created.methods)} methods "
               f"({', '.join(created.methods)}), {len(created.invites)} raters")
    typer.echo(f"invite links: {invites} (secret: send each rater only their own)")


def _write_invites(path: Path, rows: list[tuple[str, str]]) -> None:
    import csv

    # The links are the raters' credentials: create the file readable by its owner only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rater", "link"])
        writer.writerows(rows)


def invite(
    label: str = typer.Argument(..., help="The new rater's label."),
    db: str = typer.Option("study.db", "--db", help=DB_HELP),
    study: str = typer.Option(..., "--study", help="Study name."),
    base_url: str = typer.Option("http://127.0.0.1:8000", "--base-url", help="Public address of the server."),
) -> None:
    from egoframe.study.create import add_rater

    typer.echo(add_rater(db, study, label).link(base_url))


def admin_password(
    db: str = typer.Option("study.db", "--db", help=DB_HELP),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
) -> None:
    import sys

    from egoframe.study.server import set_admin_password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("admin password", hide_input=True, confirmation_prompt=True)
    set_admin_password(db, password)
    typer.echo("admin password set")


def serve(
    db: str = typer.Option("study.db", "--db", help=DB_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: all)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    max_failed_checks: int = typer.Option(0, "--max-failed-checks", min=0, help="Exclusion rule on admin pages."),
    secure_cookies: bool = typer.Option(False, "--secure-cookies", help="Behind HTTPS: admin cookie only over TLS."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Public address invite links start with "
                                           "(default http://HOST:PORT); never taken from requests."),
) -> None:
    from egoframe.study.server import serve as run

    run(db, host=host, port=port, max_failed_checks=max_failed_checks, secure_cookies=secure_cookies,
        base_url=base_url)


def results(
    db: str = typer.Option("study.db", "--db", help=DB_HELP),
    study: List[str] = typer.Option(..., "--study", help="Study name; repeat for one column per dataset."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for table.md, CSVs, results.json and plot."),
    max_failed_checks: int = typer.Option(0, "--max-failed-checks", min=0,
                                          help="Raters failing more attention checks are excluded."),
    bootstrap: int = typer.Option(2000, "--bootstrap", min=1, help="Bootstrap resamples."),
    confidence: float = typer.Option(0.95, "--confidence", help="Interval level."),
    seed: int = typer.Option(0, "--seed"),
    plot: str = typer.Option("auto", "--plot", help="auto (matplotlib if installed, else SVG), matplotlib or svg."),
) -> None:
    from egoframe.study.db import make_engine, sessions
    from egoframe.study.results import compute_results, load_votes, paper_table, votes_csv, win_rates_csv, write_plot

    if not 0 < confidence < 1:
        raise InputError(f"--confidence must be in (0, 1), got {confidence}")
    all_results = [compute_results(db, name, max_failed_checks=max_failed_checks, n_bootstrap=bootstrap,
                                   confidence=confidence, seed=seed) for name in study]
    table = paper_table(all_results)
    typer.echo(table, nl=False)
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table)
    (out / "win_rates.csv").write_text(win_rates_csv(all_results))
    (out / "results.json").write_text(json.dumps([r.to_dict() for r in all_results], indent=1, default=str))
    engine = make_engine(db)
    try:
        with sessions(engine)() as s:
            rows = [row for name in study for row in load_votes(s, name, max_failed_checks)[1]]
    finally:
        engine.dispose()
    (out / "votes.csv").write_text(votes_csv(rows))
    for res in all_results:
        written = write_plot(res, str(out / f"{res.study}-win-rates.png"), backend=plot)
        typer.echo(f"plot: {written}", err=True)
    typer.echo(f"wrote {out}/table.md, win_rates.csv, votes.csv, results.json", err=True)


def export(
    db: str = typer.Option("study.db", "--db", help=DB_HELP),
    study: str = typer.Option(..., "--study", help="Study name."),
    out: Path = typer.Option(Path("votes.csv"), "--out", help="CSV file to write."),
    max_failed_checks: int = typer.Option(0, "--max-failed-checks", min=0),
) -> None:
    from egoframe.study.db import make_engine, sessions
    from egoframe.study.results import load_votes, votes_csv

    engine = make_engine(db)
    try:
        with sessions(engine)() as s:
            _, rows, _ = load_votes(s, study, max_failed_checks)
    finally:
        engine.dispose()
    out.write_text(votes_csv(rows))
    typer.echo(f"{len(rows)} votes -> {out}")
