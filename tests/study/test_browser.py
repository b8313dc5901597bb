"""A rater takes a study end to end in headless Chromium; a second rater's link cannot see or change the votes.

Uses Debian's /usr/bin/chromium through Playwright's Python client (no browser download; see
.ci/install-browser.sh). Each page is screenshotted under the test's tmp dir; with
EGOFRAME_DOCS_SCREENSHOTS=1 the screenshots are also copied to docs/study/ for the documentation.
"""

from __future__ import annotations

import os
import shutil

import pytest
from sqlalchemy import select

from egoframe.study import StudyConfig, create_study, db
from egoframe.study.server import set_admin_password

from .conftest import LiveServer, make_generation_set

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "study")
PASSWORD = "a long admin password"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent: run .ci/install-browser.sh"),
]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def live(tmp_path):
    database = str(tmp_path / "study.db")
    root = make_generation_set(str(tmp_path / "g"), n_samples=3)
    best = create_study(database, root, StudyConfig(name="ego4d", title="Egocentric action frames",
                                                    raters=2, attention_checks=1, seed=3))
    pair = create_study(database, root, StudyConfig(name="ego4d-ab", title="Egocentric action frames (A/B)",
                                                    interface="pairwise", reference="lego", raters=1,
                                                    attention_checks=0, seed=3))
    set_admin_password(database, PASSWORD)
    with LiveServer(database) as server:
        yield server, database, best, pair


class Shots:
    def __init__(self, tmp_path):
        self.dir = tmp_path / "screenshots"
        self.dir.mkdir()
        self.names = []

    def __call__(self, page, name):
        path = self.dir / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 1000
        self.names.append(name)
        if os.environ.get("EGOFRAME_DOCS_SCREENSHOTS") == "1":
            os.makedirs(DOCS_DIR, exist_ok=True)
            shutil.copy(path, os.path.join(DOCS_DIR, f"{name}.png"))


def _votes(database):
    engine = db.make_engine(database)
    with db.sessions(engine)() as s:
        rows = s.execute(select(db.Rater.label, db.Task.position, db.Vote.slot)
                         .join(db.Task, db.Task.id == db.Vote.task_id).join(db.Rater)).all()
    engine.dispose()
    return sorted(tuple(r) for r in rows)


def test_rater_end_to_end_and_isolation(browser, live, tmp_path):
    server, database, best, pair = live
    shot = Shots(tmp_path)
    link_a = best.invites[0].link(server.url)
    link_b = best.invites[1].link(server.url)

    a = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
    a.set_default_timeout(10_000)
    a.goto(link_a)
    assert a.locator("#progress").inner_text() == "0 of 4 answered."
    shot(a, "rater-home")
    with a.expect_navigation():
        a.click("#start")
    screens = 0
    while "/task/" in a.url:
        screens += 1
        assert a.locator("#action").inner_text() in ("take cup", "put cup", "open drawer")
        # Every image on the screen loaded (no broken frames, nothing from outside the server).
        assert a.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        if screens == 1:
            shot(a, "task-best")
        a.click("#option-B")  # the whole frame is the click target
        assert a.locator("#option-B input").is_checked()
        with a.expect_navigation():
            a.click("#submit")
    assert screens == 4 and a.url.endswith("/done")
    assert "All 4 screens are answered" in a.locator("#message").inner_text()
    shot(a, "done")
    a.goto(f"{link_a}/task/2")
    assert "You answered B" in a.locator("#answered").inner_text()
    assert a.locator("#submit").count() == 0
    shot(a, "task-answered")
    votes_a = _votes(database)
    assert votes_a == [("rater-01", p, 1) for p in range(1, 5)]

    # Rater B: a separate browser; sees only their own screens, none answered.
    b = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
    b.goto(link_b)
    assert b.locator("#progress").inner_text() == "0 of 4 answered."
    for position in range(1, 5):
        b.goto(f"{link_b}/task/{position}")
        assert b.locator("#answered").count() == 0 and b.locator("#submit").count() == 1
    # B posts to A's screen with B's own form token: refused; A's votes unchanged.
    csrf_b = b.locator("input[name=csrf]").get_attribute("value")
    response = b.request.post(f"{link_a}/task/4", form={"choice": "A", "csrf": csrf_b}, max_redirects=0)
    assert response.status == 403
    # A guessed link is just an unknown one.
    assert b.goto(f"{server.url}/r/{'x' * 43}").status == 404
    shot(b, "unknown-link")
    b.goto(f"{link_b}/task/1")
    b.click("#option-A")
    with b.expect_navigation():
        b.click("#submit")
    assert b.url.endswith("/task/2")
    after = _votes(database)
    assert [v for v in after if v[0] == "rater-01"] == votes_a
    assert [v for v in after if v[0] == "rater-02"] == [("rater-02", 1, 0)]
    # Replaying A's last vote from A's own browser is refused too.
    a.go_back()
    assert a.request.post(f"{link_a}/task/1", form={"choice": "C", "csrf": "x"}).status == 403

    # Pairwise interface.
    p = browser.new_context(viewport={"width": 1100, "height": 700}).new_page()
    p.goto(f"{pair.invites[0].link(server.url)}/task/1")
    assert p.locator("input[name=choice]").count() == 2
    shot(p, "task-pairwise")

    # Admin: login, progress, results.
    admin = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
    admin.goto(f"{server.url}/admin")
    admin.set_default_timeout(10_000)
    shot(admin, "admin-login")
    admin.fill("#password", "wrong password")
    with admin.expect_navigation():
        admin.click("#login")
    assert "Wrong password" in admin.locator("#error").inner_text()
    admin.fill("#password", PASSWORD)
    with admin.expect_navigation():
        admin.click("#login")
    assert admin.locator("#studies").count() == 1
    shot(admin, "admin")
    with admin.expect_navigation():
        admin.click("#studies a >> text=ego4d")
    assert "rater-01" in admin.locator("#raters").inner_text()
    assert admin.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    shot(admin, "admin-study")
    assert sorted(shot.names) == sorted(["rater-home", "task-best", "done", "task-answered", "unknown-link",
                                         "task-pairwise", "admin-login", "admin", "admin-study"])
