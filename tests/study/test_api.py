"""The server's HTTP surface: a rater's full path, and every bad input answered with the right status."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from sqlalchemy import func, select

from egoframe.study import db

from .conftest import csrf_of, letters_of, make_generation_set


def _count_votes(database) -> int:
    engine = db.make_engine(database)
    with db.sessions(engine)() as s:
        n = s.scalar(select(func.count()).select_from(db.Vote))
    engine.dispose()
    return n


def _vote(client, token, position, choice="A", **extra):
    page = client.get(f"/r/{token}/task/{position}")
    assert page.status_code == 200, page.text
    return client.post(f"/r/{token}/task/{position}", data={"choice": choice, "csrf": csrf_of(page.text), **extra})


def test_rater_takes_whole_study(client, study):
    database, created = study
    token = created.invites[0].token
    home = client.get(f"/r/{token}")
    assert home.status_code == 200 and "0 of 8 answered" in home.text  # 6 samples + 2 attention checks
    position = 1
    while True:
        page = client.get(f"/r/{token}/task/{position}")
        assert letters_of(page.text) == ["A", "B", "C"]
        # Images on the page are served to this rater, as PNG.
        for src in re.findall(r'src="(/r/[^"]+/img/[^"]+)"', page.text):
            image = client.get(src)
            assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
        answer = client.post(f"/r/{token}/task/{position}", data={"choice": "B", "csrf": csrf_of(page.text)})
        assert answer.status_code == 303
        if answer.headers["location"].endswith("/done"):
            break
        position = int(answer.headers["location"].rsplit("/", 1)[1])
    assert position == 8
    assert "All 8 screens are answered" in client.get(f"/r/{token}/done").text
    assert _count_votes(database) == 8
    # An answered screen shows the answer, read-only.
    again = client.get(f"/r/{token}/task/3")
    assert "You answered B" in again.text and "Send vote" not in again.text


def test_rater_pages_never_name_methods(client, study):
    _, created = study
    token = created.invites[0].token
    for position in range(1, 9):
        text = client.get(f"/r/{token}/task/{position}").text.lower()
        for name in created.methods + ["target", "ground truth"]:
            assert name not in text, f"screen {position} reveals {name!r}"


@pytest.mark.parametrize("path", ["/r/{t}", "/r/{t}/task/1", "/r/{t}/done", "/r/{t}/img/0123456789abcdef"])
def test_unknown_token_is_404(client, path):
    response = client.get(path.format(t="not-a-real-token"))
    assert response.status_code == 404 and "not valid" in response.text


def test_unknown_token_cannot_vote(client, study):
    database, created = study
    page = client.get(f"/r/{created.invites[0].token}/task/1")
    response = client.post("/r/forged-token/task/1", data={"choice": "A", "csrf": csrf_of(page.text)})
    assert response.status_code == 404
    assert _count_votes(database) == 0


def test_replayed_vote_is_refused_and_first_vote_kept(client, study):
    database, created = study
    token = created.invites[0].token
    page = client.get(f"/r/{token}/task/1")
    form = {"choice": "C", "csrf": csrf_of(page.text)}
    assert client.post(f"/r/{token}/task/1", data=form).status_code == 303
    replay = client.post(f"/r/{token}/task/1", data={**form, "choice": "A"})
    assert replay.status_code == 409 and "already answered" in replay.text
    assert _count_votes(database) == 1
    assert "You answered C" in client.get(f"/r/{token}/task/1").text


@pytest.mark.parametrize("choice", ["Z", "D", "", "AB", "0", "lego", "a"])
def test_wrong_option_id_is_400(client, study, choice):
    database, created = study
    response = _vote(client, created.invites[0].token, 1, choice=choice)
    assert response.status_code == 400 and "Unknown option" in response.text
    assert _count_votes(database) == 0


def test_missing_or_foreign_csrf_is_403(client, study):
    database, created = study
    a, b = created.invites[0].token, created.invites[1].token
    assert client.post(f"/r/{a}/task/1", data={"choice": "A"}).status_code == 403
    # A form token from rater b's page does not authorise a vote on rater a's screen, nor on another screen.
    b_csrf = csrf_of(client.get(f"/r/{b}/task/1").text)
    assert client.post(f"/r/{a}/task/1", data={"choice": "A", "csrf": b_csrf}).status_code == 403
    a2_csrf = csrf_of(client.get(f"/r/{a}/task/2").text)
    assert client.post(f"/r/{a}/task/1", data={"choice": "A", "csrf": a2_csrf}).status_code == 403
    assert _count_votes(database) == 0


def test_second_rater_sees_only_own_votes(client, study):
    _, created = study
    a, b = created.invites[0].token, created.invites[1].token
    assert _vote(client, a, 1, "A").status_code == 303
    assert "0 of 8 answered" in client.get(f"/r/{b}").text
    assert "You answered" not in client.get(f"/r/{b}/task/1").text
    assert "1 of 8 answered" in client.get(f"/r/{a}").text


def test_images_of_other_studies_are_hidden(client, study, tmp_path):
    from PIL import Image

    from egoframe.study import StudyConfig, create_study
    from egoframe.study.images import clean_image_file

    database, created = study
    other_set = make_generation_set(str(tmp_path / "other"), n_samples=1, methods=("x", "y"))
    Image.new("RGB", (64, 64), (1, 2, 3)).save(f"{other_set}/frames/s000/x.png")  # only study 2 has this frame
    other = create_study(database, other_set, StudyConfig(name="epic", raters=1, attention_checks=0))
    sha = clean_image_file(f"{other_set}/frames/s000/x.png").sha256
    engine = db.make_engine(database)
    with db.sessions(engine)() as s:
        public_id = s.scalar(select(db.Image.public_id).where(db.Image.sha256 == sha))
    engine.dispose()
    assert client.get(f"/r/{other.invites[0].token}/img/{public_id}").status_code == 200
    assert client.get(f"/r/{created.invites[0].token}/img/{public_id}").status_code == 404


def test_unknown_screen_is_404(client, study):
    token = study[1].invites[0].token
    assert client.get(f"/r/{token}/task/99").status_code == 404
    assert client.get(f"/r/{token}/task/0").status_code == 404
    assert client.get(f"/r/{token}/task/abc").status_code == 422


def test_oversized_and_unsized_bodies_are_refused(client, study):
    token = study[1].invites[0].token
    big = client.post(f"/r/{token}/task/1", content=b"choice=A&comment=" + b"x" * 100_000,
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413

    def chunks():
        yield b"choice=A"

    unsized = client.post(f"/r/{token}/task/1", content=chunks(),
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert unsized.status_code == 411


@pytest.mark.parametrize("comment,why", [("x" * 501, "at most 500"), ("hi\x00there", "control character")])
def test_bad_comment_is_400(client, study, comment, why):
    database, created = study
    response = _vote(client, created.invites[0].token, 1, comment=comment)
    assert response.status_code == 400 and why in response.text
    assert _count_votes(database) == 0


def test_comment_is_stored(client, study):
    database, created = study
    assert _vote(client, created.invites[0].token, 1, comment="=cmd|' /C calc'!A0").status_code == 303
    from egoframe.study.results import load_votes, votes_csv

    engine = db.make_engine(database)
    with db.sessions(engine)() as s:
        rows = load_votes(s, "ego4d")[1]
    engine.dispose()
    assert rows[0].comment == "=cmd|' /C calc'!A0"
    assert "'=cmd" in votes_csv(rows)  # defused for spreadsheets


def test_cross_origin_post_is_403(client, study):
    token = study[1].invites[0].token
    page = client.get(f"/r/{token}/task/1")
    response = client.post(f"/r/{token}/task/1", data={"choice": "A", "csrf": csrf_of(page.text)},
                           headers={"origin": "https://evil.example"})
    assert response.status_code == 403


def test_html_is_escaped(tmp_path):
    import csv

    from fastapi.testclient import TestClient

    from egoframe.study import StudyConfig, create_study
    from egoframe.study.server import ServerSettings, create_app

    root = make_generation_set(str(tmp_path / "g"), n_samples=1)
    rows = list(csv.DictReader(open(f"{root}/samples.csv")))
    rows[0]["action"] = '<script>alert("x")</script> take cup'
    with open(f"{root}/samples.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    created = create_study(str(tmp_path / "s.db"), root, StudyConfig(name="x", raters=1, attention_checks=0))
    with TestClient(create_app(ServerSettings(database=str(tmp_path / "s.db")))) as c:
        page = c.get(f"/r/{created.invites[0].token}/task/1")
    assert "<script>" not in page.text and "&lt;script&gt;alert(" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no scripts at all
    assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "same-origin"


# ------------------------------------------------------------------------------------------------ admin

PASSWORD = "correct horse battery"


@pytest.fixture
def admin(client, study):
    from egoframe.study.server import set_admin_password

    set_admin_password(study[0], PASSWORD)
    response = client.post("/admin/login", data={"password": PASSWORD})
    assert response.status_code == 303
    client.cookies.set("egoframe_admin", response.cookies["egoframe_admin"])
    return csrf_of(client.get("/admin").text)


def test_admin_disabled_without_password(client):
    assert client.get("/admin").status_code == 403
    assert client.post("/admin/login", data={"password": "whatever12"}).status_code == 403


def test_admin_wrong_password_and_forged_cookie(client, study):
    from egoframe.study.server import set_admin_password

    set_admin_password(study[0], PASSWORD)
    assert client.post("/admin/login", data={"password": "wrong password"}).status_code == 401
    client.cookies.set("egoframe_admin", "9999999999.forged")
    page = client.get("/admin")
    assert 'type="password"' in page.text  # still the login form
    assert client.get("/admin/study/ego4d/votes.csv").status_code == 401


def test_admin_password_is_hashed(study):
    from egoframe.study.security import PASSWORD_KEY, check_password, get_setting
    from egoframe.study.server import set_admin_password

    set_admin_password(study[0], PASSWORD)
    engine = db.make_engine(study[0])
    with db.sessions(engine)() as s:
        stored = get_setting(s, PASSWORD_KEY)
    engine.dispose()
    assert PASSWORD not in stored and stored.startswith("scrypt$")
    assert check_password(PASSWORD, stored) and not check_password(PASSWORD + "!", stored)
    with pytest.raises(ValueError, match="at least 8"):
        set_admin_password(study[0], "short")


def test_admin_sees_progress_and_exports(client, study, admin):
    _, created = study
    assert _vote(client, created.invites[0].token, 1, "A").status_code == 303
    home = client.get("/admin")
    assert "ego4d" in home.text and "1 / 24" in home.text
    page = client.get("/admin/study/ego4d")
    assert page.status_code == 200 and "rater-01" in page.text and "1 / 8" in page.text
    votes = client.get("/admin/study/ego4d/votes.csv")
    assert votes.status_code == 200 and votes.text.count("\n") == 2 and "rater-01" in votes.text
    assert client.get("/admin/study/ego4d/results.csv").text.startswith("study,method,win_rate")
    assert client.get("/admin/study/ego4d/plot.svg").text.startswith("<svg")
    assert client.get("/admin/study/nope").status_code == 404


def test_admin_forms_need_csrf(client, admin):
    assert client.post("/admin/logout", data={}).status_code == 403
    assert client.post("/admin/study/ego4d/invite", data={"label": "late", "csrf": "x"}).status_code == 403
    assert client.post("/admin/logout", data={"csrf": admin}).status_code == 303


def test_admin_invites_a_rater(client, admin):
    page = client.post("/admin/study/ego4d/invite", data={"label": "late-rater", "csrf": admin})
    assert page.status_code == 200
    link = re.search(r'<code class="invite">([^<]+)</code>', page.text).group(1)
    token = link.rsplit("/", 1)[1]
    assert "0 of 8 answered" in client.get(f"/r/{token}").text
    duplicate = client.post("/admin/study/ego4d/invite", data={"label": "late-rater", "csrf": admin})
    assert duplicate.status_code == 400 and "already exists" in duplicate.text
    bad = client.post("/admin/study/ego4d/invite", data={"label": "<b>x</b>", "csrf": admin})
    assert bad.status_code == 400 and "<b>" not in bad.text


def _zip_of(root) -> bytes:
    import os

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for folder, _, files in os.walk(root):
            for name in files:
                path = os.path.join(folder, name)
                z.write(path, os.path.relpath(path, root))
    return buf.getvalue()


def _upload(client, csrf, data: bytes, name="upl"):
    return client.post("/admin/upload", data={"csrf": csrf, "name": name, "interface": "pairwise", "raters": "2",
                                              "attention_checks": "1"},
                       files={"file": ("set.zip", data, "application/zip")})


def test_admin_upload_creates_study(client, admin, tmp_path):
    data = _zip_of(make_generation_set(str(tmp_path / "up"), n_samples=2))
    page = _upload(client, admin, data)
    assert page.status_code == 200, page.text
    links = re.findall(r'<code class="invite">([^<]+)</code>', page.text)
    assert len(links) == 2
    token = links[0].rsplit("/", 1)[1]
    # pairwise over 3 methods: 3 pairs x 2 samples + 1 check; A/B only
    assert "0 of 7 answered" in client.get(f"/r/{token}").text
    assert letters_of(client.get(f"/r/{token}/task/1").text) == ["A", "B"]


def test_admin_upload_bad_inputs(client, admin, tmp_path, monkeypatch):
    from egoframe.study import server

    assert _upload(client, admin, b"not a zip").status_code == 400
    root = make_generation_set(str(tmp_path / "up"), n_samples=1)
    # A path escaping the folder.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil.png", b"x")
        z.writestr("samples.csv", "sample_id,action,input,m\n")
    bad = _upload(client, admin, buf.getvalue())
    assert bad.status_code == 400 and "outside" in bad.text
    # An "image" that is not one.
    with open(f"{root}/frames/s000/lego.png", "wb") as f:
        f.write(b"GIF89a not really")
    bad = _upload(client, admin, _zip_of(root), name="broken")
    assert bad.status_code == 400 and "not a readable image" in bad.text
    # Bad form fields.
    bad = _upload(client, admin, _zip_of(make_generation_set(str(tmp_path / "ok"), 1)), name="bad name!")
    assert bad.status_code == 400 and "study name" in bad.text
    # Oversized: the limit is lowered so the test sends a small body.
    monkeypatch.setattr(server, "MAX_UPLOAD_BYTES", 1000)
    big = _upload(client, admin, b"x" * 5000)
    assert big.status_code == 413


@pytest.mark.parametrize("position", ["9223372036854775808", "2147483648", "0", "-1"])
def test_out_of_range_screen_numbers_are_404(client, study, position):
    token = study[1].invites[0].token
    assert client.get(f"/r/{token}/task/{position}").status_code == 404
    assert client.post(f"/r/{token}/task/{position}", data={"choice": "A", "csrf": "x"}).status_code == 404


def test_login_is_throttled(client, study):
    from egoframe.study import server

    server.set_admin_password(study[0], PASSWORD)
    for _ in range(server.LOGIN_FAILURES_PER_CLIENT):
        assert client.post("/admin/login", data={"password": "wrong guess"}).status_code == 401
    throttled = client.post("/admin/login", data={"password": "wrong guess"})
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    # Even the right password waits: the throttle answers before any password is checked.
    assert client.post("/admin/login", data={"password": PASSWORD}).status_code == 429
    # The failures are in the database, so another server process on it throttles the same client.
    engine = db.make_engine(study[0])
    with db.sessions(engine)() as s:
        assert s.scalar(select(func.count()).select_from(db.LoginFailure)) == server.LOGIN_FAILURES_PER_CLIENT
        # Once the window has passed, the client may try again.
        for row in s.scalars(select(db.LoginFailure)):
            row.created_at = row.created_at.replace(year=2000)
        s.commit()
    engine.dispose()
    assert client.post("/admin/login", data={"password": PASSWORD}).status_code == 303


def test_invite_links_ignore_the_host_header(study):
    from fastapi.testclient import TestClient

    from egoframe.study.server import ServerSettings, create_app, set_admin_password

    set_admin_password(study[0], PASSWORD)
    app = create_app(ServerSettings(database=study[0], base_url="https://study.example"))
    with TestClient(app, follow_redirects=False) as client:
        login = client.post("/admin/login", data={"password": PASSWORD})
        client.cookies.set("egoframe_admin", login.cookies["egoframe_admin"])
        csrf = csrf_of(client.get("/admin").text)
        page = client.post("/admin/study/ego4d/invite", data={"label": "late", "csrf": csrf},
                           headers={"host": "evil.example"})
        link = re.search(r'<code class="invite">([^<]+)</code>', page.text).group(1)
        assert link.startswith("https://study.example/r/") and "evil" not in page.text


def test_upload_with_a_field_over_the_csv_limit_is_400(client, admin, tmp_path):
    import csv

    root = make_generation_set(str(tmp_path / "up"), n_samples=2)
    path = f"{root}/samples.csv"
    rows = list(csv.DictReader(open(path)))
    rows[0]["description"] = "x" * (130 * 1024)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    bad = _upload(client, admin, _zip_of(root), name="huge")
    assert bad.status_code == 400 and "not a readable CSV" in bad.text
