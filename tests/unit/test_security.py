"""Login lockout, sessions and security headers (docs/security.md), through Flask's test client."""
from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from services.common.config import SERVICES
from services.common.demo import save_staff
from services.common.models import StaffUser
from services.common.platform import landing_app, load_service
from services.common.web import auth, security
from services.common.web.app import create_app, prefixed
from services.common.web.auth import LOCKED_MESSAGE, WRONG_MESSAGE, hash_password, make_token
from tests.support.http import csrf_token

PASSWORD = "correct-horse-1"
REPO = Path(__file__).resolve().parents[2]
TEMPLATES = sorted([*REPO.glob("services/*/templates/**/*.html"),
                    *REPO.glob("services/common/web/templates/*.html")])


@pytest.fixture
def dispatch(build_service):
    service = build_service("dispatch")
    with service.uow() as uow:
        for username, role in (("fenbo", "dispatcher"), ("bm", "handler")):
            uow.add(StaffUser(username=username, display_name=f"{username}名", role=role, district="210902",
                              department="zhujian" if role == "handler" else None,
                              password_hash=hash_password(PASSWORD), active=True))
        uow.commit()
    return service


@pytest.fixture
def app(dispatch):
    return create_app(dispatch)


def attempt(client, username, password, next_url=None):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    return client.post("/login" + (f"?next={next_url}" if next_url else ""),
                       data={"csrf_token": token, "username": username, "password": password})


def logged_in(app, username="fenbo"):
    client = app.test_client()
    response = attempt(client, username, PASSWORD)
    assert response.status_code == 302 and "/login" not in response.headers["Location"]
    return client


def message(response) -> str:
    html = response.get_data(as_text=True)
    return LOCKED_MESSAGE if LOCKED_MESSAGE in html else WRONG_MESSAGE if WRONG_MESSAGE in html else ""


def account(service, username="fenbo"):
    with service.uow() as uow:
        return uow.session.scalars(select(StaffUser).where(StaffUser.username == username)).one()


def is_logged_in(client) -> bool:
    return client.get("/queue").status_code == 200


# -- lockout ---------------------------------------------------------------------------

def test_five_wrong_passwords_lock_the_account_for_fifteen_minutes(app, dispatch):
    client = app.test_client()
    for _ in range(4):
        assert message(attempt(client, "fenbo", "wrong")) == WRONG_MESSAGE
    assert account(dispatch).failed_logins == 4
    assert message(attempt(client, "fenbo", "wrong")) == LOCKED_MESSAGE
    locked = account(dispatch)
    assert locked.locked_until == dispatch.clock.now() + timedelta(minutes=15)
    # the right password does not get in while locked, and does not unlock
    response = attempt(client, "fenbo", PASSWORD)
    assert response.status_code == 200 and message(response) == LOCKED_MESSAGE
    assert not is_logged_in(client)
    dispatch.clock.advance(timedelta(minutes=14, seconds=59))
    assert message(attempt(client, "fenbo", PASSWORD)) == LOCKED_MESSAGE
    dispatch.clock.advance(timedelta(seconds=1))  # the service's clock, not the wall clock
    assert attempt(client, "fenbo", PASSWORD).status_code == 302
    assert is_logged_in(client)
    assert (account(dispatch).failed_logins, account(dispatch).locked_until) == (0, None)


def test_a_successful_login_resets_the_count(app, dispatch):
    client = app.test_client()
    for _ in range(4):
        attempt(client, "fenbo", "wrong")
    assert attempt(client, "fenbo", PASSWORD).status_code == 302
    assert account(dispatch).failed_logins == 0
    for _ in range(4):  # four more wrong ones do not lock: the count started again
        assert message(attempt(app.test_client(), "fenbo", "wrong")) == WRONG_MESSAGE


def test_an_expired_lock_gives_five_fresh_tries(app, dispatch):
    client = app.test_client()
    for _ in range(5):
        attempt(client, "fenbo", "wrong")
    dispatch.clock.advance(timedelta(minutes=16))
    assert message(attempt(client, "fenbo", "wrong")) == WRONG_MESSAGE
    assert account(dispatch).failed_logins == 1


def test_unknown_usernames_answer_like_real_ones(app):
    """Same messages at the same attempts, same status: the form does not tell who exists."""
    real, ghost = app.test_client(), app.test_client()
    for _ in range(6):
        a, b = attempt(real, "fenbo", "wrong"), attempt(ghost, "nobody", "wrong")
        assert (a.status_code, message(a)) == (b.status_code, message(b))
    assert message(b) == LOCKED_MESSAGE


def test_inactive_accounts_cannot_log_in(app, dispatch):
    with dispatch.uow() as uow:
        uow.session.scalars(select(StaffUser).where(StaffUser.username == "fenbo")).one().active = False
        uow.commit()
    assert message(attempt(app.test_client(), "fenbo", PASSWORD)) == WRONG_MESSAGE


def test_fzt_user_unlock_clears_the_lock_in_all_four_services(build_service, tmp_path, monkeypatch):
    from services.common import cli
    services = {name: build_service(name) for name in SERVICES}  # sqlite files under tmp_path
    for service in services.values():
        save_staff(service, "fenbo", "分拨员", "dispatcher", "210902", None, PASSWORD)
        with service.uow() as uow:
            row = uow.session.scalars(select(StaffUser).where(StaffUser.username == "fenbo")).one()
            row.failed_logins, row.locked_until = 5, service.clock.now() + timedelta(minutes=15)
            uow.commit()
    monkeypatch.setenv("FZT_ENV", "test")
    monkeypatch.setenv("FZT_VAR_DIR", str(tmp_path))
    for name in ["FZT_DATABASE_URL", *(f"FZT_DATABASE_URL_{s.upper()}" for s in SERVICES)]:
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli.main, ["user", "unlock", "fenbo"])
    assert result.exit_code == 0, result.output
    assert "unlocked in intake, dispatch, mediation, supervision" in result.output
    for service in services.values():
        row = account(service)
        assert (row.failed_logins, row.locked_until) == (0, None)
    assert CliRunner().invoke(cli.main, ["user", "unlock", "nobody"]).exit_code == 1


# -- sessions --------------------------------------------------------------------------

def test_logout_everywhere_ends_the_other_sessions(app):
    laptop, phone = logged_in(app), logged_in(app)
    stolen = laptop.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    token = csrf_token(phone.get("/login").get_data(as_text=True))
    response = phone.post("/logout-all", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    assert not is_logged_in(laptop) and not is_logged_in(phone)
    replay = app.test_client()
    replay.set_cookie(app.config["SESSION_COOKIE_NAME"], stolen)
    assert not is_logged_in(replay)  # an old cookie stays dead
    assert is_logged_in(logged_in(app))  # a new login works


def test_plain_logout_ends_only_this_browser(app):
    laptop, phone = logged_in(app), logged_in(app)
    token = csrf_token(phone.get("/login").get_data(as_text=True))
    assert phone.post("/logout", data={"csrf_token": token}).status_code == 302
    assert not is_logged_in(phone) and is_logged_in(laptop)


def test_a_password_change_ends_every_session(app, dispatch):
    client = logged_in(app)
    version = account(dispatch).session_version
    save_staff(dispatch, "fenbo", "分拨员", "dispatcher", "210902", None, "a-new-password-2")  # fzt user add
    assert account(dispatch).session_version == version + 1
    assert not is_logged_in(client)


def test_sessions_last_eight_hours(app, monkeypatch):
    client = logged_in(app)
    started = auth._wall_clock()
    monkeypatch.setattr(auth, "_wall_clock", lambda: started + 8 * 3600 - 60)
    assert is_logged_in(client)
    monkeypatch.setattr(auth, "_wall_clock", lambda: started + 8 * 3600 + 60)
    assert not is_logged_in(client)
    assert app.permanent_session_lifetime == timedelta(hours=8)


def test_session_cookie_flags(app, dispatch):
    response = attempt(app.test_client(), "fenbo", PASSWORD)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie
    assert "Secure" not in cookie  # development and test: plain http
    settings = dataclasses.replace(dispatch.settings, env="production", secret_key="s" * 40)
    production = create_app(load_service("dispatch", settings, clock=dispatch.clock))
    assert production.config["SESSION_COOKIE_SECURE"] is True
    https = production.test_client().get("/healthz", base_url="https://localhost")
    assert https.headers["Strict-Transport-Security"] == security.HSTS


def test_bearer_tokens_are_not_sessions(app):
    token = make_token(app.config["SECRET_KEY"], "fenbo")
    response = app.test_client().get("/api/v1/cases", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("target", ["//evil.example/x", "/\\evil.example/x", "https://evil.example/",
                                    "%2Fqueue%0D%0ALocation:%20http://evil.example", "%2F%5Cevil.example"])
def test_login_never_redirects_to_another_site(app, target):
    response = attempt(app.test_client(), "fenbo", PASSWORD, next_url=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_login_redirects_back_to_a_local_page(app):
    response = attempt(app.test_client(), "fenbo", PASSWORD, next_url="/queue?district=210902")
    assert response.headers["Location"] == "/queue?district=210902"


# -- headers ---------------------------------------------------------------------------

def test_security_headers_on_pages_api_errors_and_static(app):
    client = logged_in(app)
    token = make_token(app.config["SECRET_KEY"], "fenbo")
    answers = {"page": client.get("/queue"), "login": app.test_client().get("/login"),
               "api": app.test_client().get("/api/v1/cases", headers={"Authorization": f"Bearer {token}"}),
               "not found": client.get("/no-such-page"), "static": client.get("/static/fzt.css")}
    for what, response in answers.items():
        headers = response.headers
        assert headers["Content-Security-Policy"] == security.CONTENT_SECURITY_POLICY, what
        assert headers["X-Content-Type-Options"] == "nosniff", what
        assert headers["Referrer-Policy"] == "same-origin", what
        assert headers["X-Frame-Options"] == "DENY", what
        assert "camera=()" in headers["Permissions-Policy"], what
        assert "Strict-Transport-Security" not in headers, what  # not production
        if what == "static":
            assert "no-store" not in headers.get("Cache-Control", ""), what
        else:
            assert headers["Cache-Control"] == "no-store", what


def test_the_policy_says_what_docs_security_md_says():
    policy = dict(part.split(" ", 1) for part in security.CONTENT_SECURITY_POLICY.split("; "))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"].split()[0] == "'self'" and "'unsafe-inline'" not in policy["script-src"]
    assert policy["style-src"] == "'self'"
    assert policy["img-src"] == "'self' data:"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'self'"
    assert policy["form-action"] == "'self'"


def test_landing_page_gets_the_headers_too():
    from werkzeug.test import Client
    response = Client(prefixed({}, landing_app())).get("/")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == security.CONTENT_SECURITY_POLICY


def test_templates_use_nothing_the_policy_blocks():
    """No inline <script>, <style>, style="…" or event handlers: the CSP blocks them."""
    assert TEMPLATES
    problems = []
    for path in TEMPLATES:
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(REPO)
        for match in re.finditer(r"<script\b([^>]*)>", text):
            if "src=" not in match.group(1):
                problems.append(f"{name}: inline <script>")
        if re.search(r"<style\b", text):
            problems.append(f"{name}: <style> element")
        if re.search(r"\sstyle\s*=", text):
            problems.append(f"{name}: style= attribute")
        for match in re.finditer(r"\son[a-z]+\s*=\s*\"([^\"]*)\"", text):
            problems.append(f"{name}: inline handler {match.group(0).strip()!r}")
        if "javascript:" in text:
            problems.append(f"{name}: javascript: URL")
    assert not problems, "blocked by the Content-Security-Policy:\n  " + "\n  ".join(problems)


