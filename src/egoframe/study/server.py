"""The study web server: FastAPI over the study database, server-rendered pages, no JavaScript, no CDN.

Rater pages live under ``/r/<invite token>``: the token is the rater's identity, so a rater reaches only
their own tasks and no form lets one rater act for another. Admin pages need a password (scrypt hash in
the database, constant-time compare) and a signed, HttpOnly, SameSite=Strict cookie. Every form carries
an HMAC token tied to its page (CSRF), every page is autoescaped Jinja2, and a strict CSP forbids scripts.
"""

# No `from __future__ import annotations`: FastAPI reads endpoint annotations at definition time, and
# `Request` is imported inside create_app (lazily, so the CLI starts without FastAPI).
import datetime as dt
import io
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import resources

from egoframe.errors import EgoframeError, InputError
from egoframe.study import db
from egoframe.study.create import DESCRIBE_ANSWERS, LETTERS, StudyConfig, add_rater, create_study
from egoframe.study.generation_set import clean_text
from egoframe.study.results import (
    load_votes, results_from_votes, svg_bar_chart, votes_csv, win_rates_csv,
)
from egoframe.study.security import (
    PASSWORD_KEY, check_admin_cookie, check_password, ensure_secret, get_setting, make_admin_cookie, sign,
    token_hash, verify,
)

MAX_FORM_BYTES = 64 * 1024  # a vote or login form is a few hundred bytes
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_ZIP_MEMBERS = 5000
MAX_ZIP_UNCOMPRESSED = 512 * 1024 * 1024
MAX_COMMENT_CHARS = 500
ADMIN_COOKIE = "egoframe_admin"
ADMIN_SESSION_S = 8 * 3600
# Login throttling: at most this many wrong passwords per client (and, against many clients, in all) in the
# window; further attempts get HTTP 429 before the password is even checked. Kept in the database, so every
# server process behind a load balancer counts the same guesses.
LOGIN_WINDOW_S = 60
LOGIN_FAILURES_PER_CLIENT = 5
LOGIN_FAILURES_TOTAL = 50
MAX_POSITION = 2**31 - 1  # screen numbers are 32-bit integers in every database (PostgreSQL's INTEGER)
SECURITY_HEADERS = {
    # No scripts at all, nothing from other origins, forms post only here, never framed.
    "content-security-policy": "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # Invite tokens are in URLs: never send them to another site. ("no-referrer" would also make browsers
    # send "Origin: null" on our own form posts, defeating the Origin check below.)
    "referrer-policy": "same-origin",
}


@dataclass
class ServerSettings:
    database: str  # path to a SQLite file or a SQLAlchemy URL
    max_failed_checks: int = 0
    secure_cookies: bool = False  # set behind HTTPS so the admin cookie is never sent in clear
    # The public address invite links start with. Never the request's Host header: a forged Host would make
    # the admin copy links to another site.
    base_url: str = "http://127.0.0.1:8000"


def create_app(settings: ServerSettings):
    """The ASGI app for a study database (which must exist: `egoframe study create` makes it)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    from sqlalchemy import delete, func, select
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import selectinload
    from starlette.concurrency import run_in_threadpool

    engine = db.make_engine(settings.database)
    db.Base.metadata.create_all(engine)  # a fresh PostgreSQL database gets its tables on first start
    Session = db.sessions(engine)
    with Session() as s:
        secret = ensure_secret(s)
    package = resources.files("egoframe.study")
    templates = Environment(loader=FileSystemLoader(os.fspath(package / "templates")),
                            autoescape=select_autoescape(default=True, default_for_string=True))
    templates.globals.update(letters=LETTERS, max_comment=MAX_COMMENT_CHARS,
                             pct=lambda x: "–" if x != x else f"{100 * x:.1f}")
    css = (package / "static" / "study.css").read_bytes()

    app = FastAPI(title="egoframe study", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine

    class Problem(Exception):
        def __init__(self, status: int, message: str, title: str = "Error"):
            self.status, self.message, self.title = status, message, title

    def page(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        context.setdefault("title", "egoframe study")
        text = templates.get_template(name).render(root=request.scope.get("root_path", ""), **context)
        return HTMLResponse(text, status_code=status)

    @app.exception_handler(Problem)
    async def problem_page(request: Request, exc: Problem):
        return page(request, "message.html", exc.status, title=exc.title, message=exc.message)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.method == "POST":
            limit = MAX_UPLOAD_BYTES if request.url.path.endswith("/admin/upload") else MAX_FORM_BYTES
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                # Without a declared length the body size is unknown until read: refuse instead of buffering.
                return page(request, "message.html", 411, title="Length required",
                            message="the request must declare its Content-Length")
            if int(length) > limit:
                return page(request, "message.html", 413, title="Too large",
                            message=f"the request body is {int(length)} bytes; at most {limit} are accepted")
            origin = request.headers.get("origin")
            # Defence in depth behind the per-form HMAC tokens: a browser names the page that posted. "null"
            # (privacy settings, sandboxed frames) is let through to the token check rather than locking out raters.
            if origin and origin != "null" and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}":
                return page(request, "message.html", 403, title="Forbidden",
                            message="cross-site form posts are refused")
        response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers["cache-control"] = "no-store"
        return response

    async def read_form(request: Request, **limits):
        try:
            return await request.form(**limits)
        except Exception as exc:  # malformed multipart, too many fields/files: all the client's fault
            raise Problem(400, f"malformed form: {str(exc)[:200]}") from None

    # ------------------------------------------------------------------------------------------ raters

    def rater_or_404(session, token: str) -> db.Rater:
        rater = session.scalar(select(db.Rater).where(db.Rater.token_sha256 == token_hash(token))
                               .options(selectinload(db.Rater.study)))
        if rater is None:
            raise Problem(404, "This invite link is not valid. Check that you copied the whole link.",
                          "Unknown link")
        return rater

    def progress(session, rater: db.Rater) -> tuple[int, int, int | None]:
        positions = session.execute(
            select(db.Task.position, db.Vote.id).outerjoin(db.Vote, db.Vote.task_id == db.Task.id)
            .where(db.Task.rater_id == rater.id).order_by(db.Task.position)).all()
        answered = sum(v is not None for _, v in positions)
        next_position = next((p for p, v in positions if v is None), None)
        return answered, len(positions), next_position

    @app.get("/", response_class=HTMLResponse)
    def landing(request: Request):
        return page(request, "message.html", title="egoframe study",
                    message="This server runs a user study. Open the personal link you were sent.")

    @app.get("/static/study.css")
    def stylesheet():
        return Response(css, media_type="text/css", headers={"cache-control": "public, max-age=3600"})

    @app.get("/r/{token}", response_class=HTMLResponse)
    def rater_home(request: Request, token: str):
        with Session() as s:
            rater = rater_or_404(s, token)
            answered, total, next_position = progress(s, rater)
            return page(request, "rater_home.html", title=rater.study.title, study=rater.study, token=token,
                        answered=answered, total=total, next_position=next_position)

    def check_position(position: int) -> None:
        if not 1 <= position <= MAX_POSITION:
            raise Problem(404, f"There is no screen {str(position)[:20]} for this link.", "Not found")

    def task_page(request: Request, token: str, position: int, status: int = 200):
        check_position(position)
        with Session() as s:
            rater = rater_or_404(s, token)
            task = s.scalar(select(db.Task).where(db.Task.rater_id == rater.id, db.Task.position == position)
                            .options(selectinload(db.Task.options).selectinload(db.TaskOption.image),
                                     selectinload(db.Task.sample).selectinload(db.Sample.input_image),
                                     selectinload(db.Task.vote), selectinload(db.Task.text)))
            if task is None:
                raise Problem(404, f"There is no screen {position} for this link.", "Not found")
            answered, total, next_position = progress(s, rater)
            config = StudyConfig(**rater.study.config)
            return page(request, "task.html", status, title=f"{rater.study.title} · {position}/{total}",
                        study=rater.study, token=token, task=task, sample=task.sample, options=task.options,
                        input_image=task.sample.input_image.public_id, total=total, answered=answered,
                        next_position=next_position, chosen=task.vote.slot if task.vote else None,
                        show_description=config.show_description,
                        describe=rater.study.interface == "describe", answers=DESCRIBE_ANSWERS,
                        description=task.text.text if task.text else "",
                        csrf=sign(secret, "vote", str(rater.id), str(position)))

    @app.get("/r/{token}/task/{position}", response_class=HTMLResponse)
    def show_task(request: Request, token: str, position: int):
        return task_page(request, token, position)

    @app.post("/r/{token}/task/{position}")
    async def vote(request: Request, token: str, position: int):
        form = await read_form(request, max_files=0, max_fields=8, max_part_size=MAX_FORM_BYTES)
        choice, csrf = str(form.get("choice", "")), str(form.get("csrf", ""))
        comment = str(form.get("comment", ""))
        check_position(position)

        def record():
            with Session() as s:
                rater = rater_or_404(s, token)
                if not verify(secret, csrf, "vote", str(rater.id), str(position)):
                    raise Problem(403, "This form has expired or was not sent from this page; reload and retry.",
                                  "Forbidden")
                task = s.scalar(select(db.Task).where(db.Task.rater_id == rater.id, db.Task.position == position)
                                .options(selectinload(db.Task.options)))
                if task is None:
                    raise Problem(404, f"There is no screen {position} for this link.", "Not found")
                letters = LETTERS[: len(task.options)]
                if len(choice) != 1 or choice not in letters:
                    raise Problem(400, f"Unknown option {choice[:20]!r}: choose one of {', '.join(letters)}.",
                                  "Bad vote")
                try:
                    text = clean_text(comment, "comment", MAX_COMMENT_CHARS)
                except InputError as exc:
                    raise Problem(400, str(exc), "Bad vote") from None
                s.add(db.Vote(task_id=task.id, rater_id=rater.id, slot=letters.index(choice), comment=text))
                try:
                    s.commit()
                except IntegrityError:
                    # The unique task_id constraint: a replayed form, a double click, or a racing second tab.
                    s.rollback()
                    raise Problem(409, "This screen was already answered; a vote cannot be changed.",
                                  "Already answered") from None
                _, _, next_position = progress(s, rater)
                return next_position

        next_position = await run_in_threadpool(record)
        target = f"/r/{token}/task/{next_position}" if next_position else f"/r/{token}/done"
        return RedirectResponse(request.scope.get("root_path", "") + target, status_code=303)

    @app.get("/r/{token}/done", response_class=HTMLResponse)
    def done(request: Request, token: str):
        with Session() as s:
            rater = rater_or_404(s, token)
            answered, total, next_position = progress(s, rater)
            return page(request, "done.html", title=rater.study.title, token=token, total=total,
                        remaining=total - answered, next_position=next_position)

    @app.get("/r/{token}/img/{public_id}")
    def image(token: str, public_id: str):
        with Session() as s:
            rater = rater_or_404(s, token)
            img = s.scalar(select(db.Image).where(db.Image.public_id == public_id))
            # Only images on this rater's own screens: another study's frames stay unseen.
            in_options = img is not None and s.scalar(
                select(func.count()).select_from(db.TaskOption).join(db.Task)
                .where(db.Task.rater_id == rater.id, db.TaskOption.image_id == img.id))
            as_input = img is not None and not in_options and s.scalar(
                select(func.count()).select_from(db.Task).join(db.Sample)
                .where(db.Task.rater_id == rater.id, db.Sample.input_image_id == img.id))
            if not (in_options or as_input):
                raise Problem(404, "No such image.", "Not found")
            return Response(img.png, media_type="image/png", headers={"cache-control": "private, max-age=86400"})

    # ------------------------------------------------------------------------------------------- admin

    def password_hash() -> str | None:
        with Session() as s:
            return get_setting(s, PASSWORD_KEY)

    def admin_cookie(request: Request) -> str:
        stored = password_hash()
        if stored is None:
            raise Problem(403, "Admin pages are disabled until a password is set: "
                               "egoframe study admin-password --db DATABASE", "Admin disabled")
        cookie = request.cookies.get(ADMIN_COOKIE)
        if not check_admin_cookie(secret, stored, cookie):
            raise Problem(401, "Log in first.", "Login required")
        return cookie

    def admin_csrf(cookie: str) -> str:
        return sign(secret, "admin-form", cookie)

    async def admin_form(request: Request, **limits):
        cookie = admin_cookie(request)
        form = await read_form(request, **limits)
        if not verify(secret, str(form.get("csrf", "")), "admin-form", cookie):
            raise Problem(403, "This form has expired or was not sent from this site; reload and retry.",
                          "Forbidden")
        return form

    @app.get("/admin", response_class=HTMLResponse)
    def admin_home(request: Request):
        try:
            cookie = admin_cookie(request)
        except Problem as exc:
            if exc.status == 401:
                return page(request, "admin_login.html", title="Study administration")
            raise
        with Session() as s:
            studies = []
            for study in s.scalars(select(db.Study).order_by(db.Study.id)):
                tasks = s.scalar(select(func.count()).select_from(db.Task).join(db.Rater)
                                 .where(db.Rater.study_id == study.id))
                votes = s.scalar(select(func.count()).select_from(db.Vote).join(db.Rater)
                                 .where(db.Rater.study_id == study.id))
                studies.append(dict(name=study.name, interface=study.interface, raters=len(study.raters),
                                    tasks=tasks, votes=votes))
        return page(request, "admin.html", title="Studies", studies=studies, csrf=admin_csrf(cookie),
                    max_upload_mb=MAX_UPLOAD_BYTES // 2**20)

    def login_wait(client: str) -> int:
        """Seconds until ``client`` may guess again (0: now), from the failures of the last window."""
        since = db.utcnow() - dt.timedelta(seconds=LOGIN_WINDOW_S)
        with Session() as s:
            s.execute(delete(db.LoginFailure).where(db.LoginFailure.created_at < since))  # forget old ones
            s.commit()
            mine = s.scalars(select(db.LoginFailure.created_at).where(db.LoginFailure.client == client)
                             .order_by(db.LoginFailure.created_at.desc())).all()
            total = s.scalars(select(db.LoginFailure.created_at).order_by(db.LoginFailure.created_at.desc())
                              .limit(LOGIN_FAILURES_TOTAL)).all()
        for times, limit in ((mine, LOGIN_FAILURES_PER_CLIENT), (total, LOGIN_FAILURES_TOTAL)):
            if len(times) >= limit:
                # The window frees a slot when the limit-th most recent failure ages out of it.
                free_at = times[limit - 1] + dt.timedelta(seconds=LOGIN_WINDOW_S)
                return max(1, math.ceil((free_at - db.utcnow()).total_seconds()))
        return 0

    def record_login_failure(client: str) -> None:
        with Session() as s:
            s.add(db.LoginFailure(client=client))
            s.commit()

    @app.post("/admin/login")
    async def admin_login(request: Request):
        form = await read_form(request, max_files=0, max_fields=4, max_part_size=4096)
        password = str(form.get("password", ""))
        stored = password_hash()
        if stored is None:
            raise Problem(403, "Admin pages are disabled until a password is set: "
                               "egoframe study admin-password --db DATABASE", "Admin disabled")
        client = (request.client.host if request.client else "unknown")[:64]
        wait = await run_in_threadpool(login_wait, client)
        if wait:
            response = page(request, "admin_login.html", 429, title="Study administration",
                            error=f"Too many wrong passwords; try again in {wait} s.")
            response.headers["retry-after"] = str(wait)
            return response
        ok = await run_in_threadpool(check_password, password, stored)  # scrypt: keep the event loop free
        if not ok:
            await run_in_threadpool(record_login_failure, client)
            return page(request, "admin_login.html", 401, title="Study administration", error="Wrong password.")
        response = RedirectResponse(request.scope.get("root_path", "") + "/admin", status_code=303)
        response.set_cookie(ADMIN_COOKIE, make_admin_cookie(secret, stored, ADMIN_SESSION_S),
                            max_age=ADMIN_SESSION_S, httponly=True, samesite="strict",
                            secure=settings.secure_cookies, path="/")
        return response

    @app.post("/admin/logout")
    async def admin_logout(request: Request):
        await admin_form(request, max_files=0, max_fields=4)
        response = RedirectResponse(request.scope.get("root_path", "") + "/admin", status_code=303)
        response.delete_cookie(ADMIN_COOKIE, path="/")
        return response

    def study_or_404(s, name: str) -> db.Study:
        study = s.scalar(select(db.Study).where(db.Study.name == name))
        if study is None:
            raise Problem(404, "No such study.", "Not found")
        return study

    def study_results(name: str):
        with Session() as s:
            study = study_or_404(s, name)
            _, rows, raters = load_votes(s, name, settings.max_failed_checks)
            methods = [m.name for m in study.methods]
            return study, rows, results_from_votes(name, study.interface, methods, rows, raters,
                                                   max_failed_checks=settings.max_failed_checks, n_bootstrap=1000)

    @app.get("/admin/study/{name}", response_class=HTMLResponse)
    def admin_study(request: Request, name: str):
        cookie = admin_cookie(request)
        study, _, results = study_results(name)
        return page(request, "admin_study.html", title=study.title, study=study, raters=results.raters,
                    results=results, methods=[m.method for m in results.methods], csrf=admin_csrf(cookie))

    @app.get("/admin/study/{name}/votes.csv")
    def admin_votes_csv(request: Request, name: str):
        admin_cookie(request)
        _, rows, _ = study_results(name)
        return PlainTextResponse(votes_csv(rows), media_type="text/csv",
                                 headers={"content-disposition": f'attachment; filename="{name}-votes.csv"'})

    @app.get("/admin/study/{name}/results.csv")
    def admin_results_csv(request: Request, name: str):
        admin_cookie(request)
        _, _, results = study_results(name)
        return PlainTextResponse(win_rates_csv([results]), media_type="text/csv",
                                 headers={"content-disposition": f'attachment; filename="{name}-win-rates.csv"'})

    @app.get("/admin/study/{name}/plot.svg")
    def admin_plot(request: Request, name: str):
        admin_cookie(request)
        _, _, results = study_results(name)
        return Response(svg_bar_chart(results), media_type="image/svg+xml")

    @app.post("/admin/study/{name}/invite", response_class=HTMLResponse)
    async def admin_invite(request: Request, name: str):
        form = await admin_form(request, max_files=0, max_fields=4)

        def invite():
            with Session() as s:
                study_or_404(s, name)
                try:
                    return add_rater(s, name, str(form.get("label", "")))
                except EgoframeError as exc:
                    raise Problem(400, str(exc), "Bad request") from None

        created = await run_in_threadpool(invite)
        base = settings.base_url
        return page(request, "admin_invites.html", title=f"New rater for {name}", study_name=name,
                    invites=[(created.label, created.link(base))])

    @app.post("/admin/upload", response_class=HTMLResponse)
    async def admin_upload(request: Request):
        form = await admin_form(request, max_files=1, max_fields=10, max_part_size=MAX_FORM_BYTES)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise Problem(400, "Attach a .zip of a generation set.", "Bad upload")
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise Problem(413, f"The upload is larger than {MAX_UPLOAD_BYTES} bytes.", "Too large")

        def build():
            try:
                config = StudyConfig(
                    name=str(form.get("name", "")), interface=str(form.get("interface", "best")),
                    raters=_int_field(form, "raters", 5, 1, 1000),
                    attention_checks=_int_field(form, "attention_checks", 2, 0, 50))
                return create_study_from_zip(settings.database, data, config)
            except EgoframeError as exc:
                raise Problem(400, str(exc), "Bad upload") from None

        created = await run_in_threadpool(build)
        base = settings.base_url
        return page(request, "admin_invites.html", title=f"Study {created.name} created", study_name=created.name,
                    invites=[(i.label, i.link(base)) for i in created.invites])

    return app


def _int_field(form, name: str, default: int, low: int, high: int) -> int:
    raw = str(form.get(name, "") or default).strip()
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InputError(f"{name} must be a whole number in {low}..{high}, got {raw[:20]!r}")
    return int(raw)


def create_study_from_zip(database: str, data: bytes, config: StudyConfig):
    """Unpack an uploaded generation set (bounded, no path escapes) and create a study from it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise InputError("the upload is not a .zip file") from None
    members = archive.infolist()
    if len(members) > MAX_ZIP_MEMBERS:
        raise InputError(f"the zip holds {len(members)} files; at most {MAX_ZIP_MEMBERS} are accepted")
    # Declared sizes bound the work before anything is inflated (zip bombs).
    if sum(m.file_size for m in members) > MAX_ZIP_UNCOMPRESSED:
        raise InputError(f"the zip unpacks to more than {MAX_ZIP_UNCOMPRESSED} bytes")
    with tempfile.TemporaryDirectory(prefix="egoframe-upload-") as tmp:
        for m in members:
            name = m.filename
            parts = name.replace("\\", "/").split("/")
            if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
                raise InputError(f"the zip entry {name[:100]!r} points outside the folder")
            if m.is_dir():
                continue
            dest = os.path.join(tmp, *parts)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with archive.open(m) as src, open(dest, "wb") as out:
                # Read at most the declared size + 1: a lying header cannot inflate more than it declared.
                chunk = src.read(m.file_size + 1)
                if len(chunk) > m.file_size:
                    raise InputError(f"the zip entry {name[:100]!r} is larger than it declares")
                out.write(chunk)
        root = tmp
        entries = [e for e in os.listdir(tmp) if not e.startswith("__MACOSX")]
        if not os.path.exists(os.path.join(tmp, "samples.csv")) and len(entries) == 1 and os.path.isdir(
                os.path.join(tmp, entries[0])):
            root = os.path.join(tmp, entries[0])  # a zipped folder rather than zipped contents
        return create_study(database, root, config, confine=True)


def set_admin_password(database: str, password: str) -> None:
    """Store the scrypt hash of the admin password (every server process on this database reads it)."""
    from egoframe.study.security import hash_password, set_setting

    engine = db.make_engine(database)
    try:
        with db.sessions(engine)() as s:
            set_setting(s, PASSWORD_KEY, hash_password(password))
            s.commit()
    finally:
        engine.dispose()


def serve(database: str, host: str = "127.0.0.1", port: int = 8000, *, max_failed_checks: int = 0,
          secure_cookies: bool = False, base_url: str | None = None, log_level: str = "info") -> None:
    """Run the server with uvicorn (blocking). Scale out by starting more of these on one PostgreSQL.

    base_url: the public address for invite links made on the admin pages (default: this host and port)."""
    import uvicorn

    if base_url is None:
        base_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    if not base_url.startswith(("http://", "https://")):
        raise InputError(f"base URL {base_url!r} must start with http:// or https://")
    app = create_app(ServerSettings(database=database, max_failed_checks=max_failed_checks,
                                    secure_cookies=secure_cookies, base_url=base_url.rstrip("/")))
    # proxy_headers: behind a reverse proxy the scheme/host of links and the Origin check must be the public ones.
    uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=True, server_header=False)


__all__ = ["ServerSettings", "create_app", "create_study_from_zip", "serve", "set_admin_password"]
