"""Staff accounts (docs/security.md): admin pages, forced password change, own password,
password rules, API token expiry and revocation, audit entries — through Flask's test client."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from services.common.config import SERVICES
from services.common.models import AuditEntry, StaffUser
from services.common.passwords import password_problem
from services.common.web import tokens
from services.common.web.app import create_app
from services.common.web.auth import hash_password, make_token
from services.common.web.roles import ROLES, scope_problem
from tests.support.http import csrf_token

PASSWORD = "correct-horse-1"
TEMPORARY = "Temporary-pass-42"


@pytest.fixture
def dispatch(build_service):
    service = build_service("dispatch")
    with service.uow() as uow:
        for username, role, district, department in (("root", "admin", None, None),
                                                     ("fenbo", "dispatcher", "210902", None),
                                                     ("bm", "handler", None, "zhujian")):
            uow.add(StaffUser(username=username, display_name=f"{username}名", role=role, district=district,
                              department=department, password_hash=hash_password(PASSWORD), active=True))
        uow.commit()
    return service


@pytest.fixture
def app(dispatch):
    return create_app(dispatch)


def login(app, username, password=PASSWORD):
    client = app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": password})
    return client, response


def logged_in(app, username="root", password=PASSWORD):
    client, response = login(app, username, password)
    assert response.status_code == 302 and "/login" not in response.headers["Location"], username
    return client


def post(client, url, **data):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **data})


def account(service, username):
    with service.uow() as uow:
        return uow.session.scalars(select(StaffUser).where(StaffUser.username == username)).first()


def entries(service, action):
    with service.uow() as uow:
        return uow.session.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                   .order_by(AuditEntry.id)).all()


def bearer(app, username, version=0):
    return {"Authorization": f"Bearer {make_token(app.config['SECRET_KEY'], username, version)}"}


def api_ok(app, headers) -> bool:
    return app.test_client().get("/api/v1/cases", headers=headers).status_code == 200


# -- password rules and roles ----------------------------------------------------------

@pytest.mark.parametrize("password, problem", [
    ("short-1", "至少"), ("x" * 129, "不能超过"), ("fenbo-secret-9", "用户名"), ("FENBO-secret-9", "用户名"),
    ("aaaaaaaaaaaa", "同一个字符"), ("password123", "常见"), ("Qwerty123456", "常见"), ("1234567890", "常见"),
    ("fuxin2024!!", "常见"), ("admin12345", "常见"),
])
def test_password_rules_refuse(password, problem):
    assert problem in (password_problem(password, "fenbo") or "")


@pytest.mark.parametrize("password", ["correct-horse-1", "海州区分拨中心2025年", "tr0ub4dor&3x"])
def test_password_rules_accept(password):
    assert password_problem(password, "fenbo") is None


def test_every_role_of_the_issue_has_an_identifier_and_a_chinese_name():
    assert set(ROLES) == {"intake_operator", "grid_worker", "dispatcher", "handler", "chief", "mediator",
                          "reception", "supervisor", "leader", "process_designer", "admin"}
    assert all(re.search(r"[\u4e00-\u9fff]", role.name) for role in ROLES.values())


def test_role_scope_rules():
    assert scope_problem("grid_worker", None, None) == "网格员必须选择所属县区"
    assert scope_problem("handler", None, None) == "部门办理人必须选择所属部门"
    assert "不按县区" in scope_problem("supervisor", "210902", None)
    assert "不属于某个部门" in scope_problem("dispatcher", None, "zhujian")
    assert scope_problem("dispatcher", None, None) is None  # city level
    assert scope_problem("leader", "210902", None) is None
    assert scope_problem("nobody", None, None) == "未知的角色"


# -- admin pages -----------------------------------------------------------------------

def test_admin_lists_accounts_with_role_scope_and_state(app, dispatch):
    with dispatch.uow() as uow:
        uow.session.scalars(select(StaffUser).where(StaffUser.username == "bm")).one().active = False
        uow.commit()
    html = logged_in(app).get("/admin/users").get_data(as_text=True)
    row = re.search(r'<tr data-username="fenbo">(.*?)</tr>', html, re.S).group(1)
    assert "分拨员" in row and "海州区" in row and "正常" in row
    assert "已锁定" in re.search(r'<tr data-username="bm">(.*?)</tr>', html, re.S).group(1)


def test_non_admins_get_403_on_the_admin_pages(app):
    client = logged_in(app, "fenbo")
    assert client.get("/admin/users").status_code == 403
    assert post(client, "/admin/users/bm/lock").status_code == 403
    assert account(app.extensions["fzt"], "bm").active is True


def test_create_account_then_the_user_must_change_the_initial_password(app, dispatch):
    admin = logged_in(app)
    response = post(admin, "/admin/users/new", username="WG_Haizhou", display_name="海州区网格员",
                    role="grid_worker", district="210902", department="", password=TEMPORARY, confirm=TEMPORARY)
    assert response.status_code == 302
    row = account(dispatch, "wg_haizhou")  # usernames are lower case
    assert (row.role, row.district, row.department, row.must_change_password) == ("grid_worker", "210902", None, True)
    entry = entries(dispatch, "admin.user_create")[-1]
    assert (entry.actor, entry.role) == ("root", "admin")
    assert entry.detail == {"user": "wg_haizhou", "role": "grid_worker", "district": "210902", "department": None}
    assert TEMPORARY not in str(entry.detail)

    user = logged_in(app, "wg_haizhou", TEMPORARY)
    # every page leads to the password page until the user chose their own
    for path in ("/queue", "/admin/users", "/audit"):
        response = user.get(path)
        assert response.status_code == 302 and response.headers["Location"].endswith("/account/password"), path
    assert "请先设置您自己的密码" in user.get("/account/password").get_data(as_text=True)
    refused = post(user, "/account/password", current=TEMPORARY, new="wg_haizhou-2025x", confirm="wg_haizhou-2025x")
    assert refused.status_code == 400 and "密码不能包含用户名" in refused.get_data(as_text=True)
    same = post(user, "/account/password", current=TEMPORARY, new=TEMPORARY, confirm=TEMPORARY)
    assert same.status_code == 400 and "不能与当前密码相同" in same.get_data(as_text=True)
    done = post(user, "/account/password", current=TEMPORARY, new="my-own-secret-77", confirm="my-own-secret-77")
    assert done.status_code == 302
    assert account(dispatch, "wg_haizhou").must_change_password is False
    assert user.get("/queue").status_code == 403  # this session goes on (a grid worker has no queue)
    assert entries(dispatch, "auth.password_change")[-1].actor == "wg_haizhou"


def test_create_account_refuses_bad_input_and_says_why(app, dispatch):
    admin = logged_in(app)
    cases = [
        (dict(username="fenbo"), "已被使用"),
        (dict(username="张三"), "小写字母"),
        (dict(role="grid_worker", district=""), "网格员必须选择所属县区"),
        (dict(role="supervisor", district="210902"), "不按县区"),
        (dict(password="fenbo2-abcdefg", confirm="fenbo2-abcdefg", username="fenbo2"), "用户名"),
        (dict(password="password123", confirm="password123"), "常见"),
        (dict(confirm="something-else-1"), "不一致"),
    ]
    base = dict(username="newbie", display_name="新人", role="dispatcher", district="210902", department="",
                password=TEMPORARY, confirm=TEMPORARY)
    for change, message in cases:
        response = post(admin, "/admin/users/new", **{**base, **change})
        assert response.status_code == 400 and message in response.get_data(as_text=True), change
    assert account(dispatch, "newbie") is None and account(dispatch, "fenbo2") is None
    assert entries(dispatch, "admin.user_create") == []


def test_reset_password_ends_sessions_and_tokens_and_forces_a_change(app, dispatch):
    user = logged_in(app, "fenbo")
    token = bearer(app, "fenbo", account(dispatch, "fenbo").session_version)
    assert api_ok(app, token)
    with dispatch.uow() as uow:  # a lockout is cleared by the reset
        row = uow.session.scalars(select(StaffUser).where(StaffUser.username == "fenbo")).one()
        row.failed_logins, row.locked_until = 5, dispatch.clock.now() + timedelta(minutes=15)
        uow.commit()
    assert post(logged_in(app), "/admin/users/fenbo/password", password=TEMPORARY, confirm=TEMPORARY).status_code == 302
    assert user.get("/queue").status_code == 302  # to the login page
    assert not api_ok(app, token)
    row = account(dispatch, "fenbo")
    assert (row.must_change_password, row.failed_logins, row.locked_until) == (True, 0, None)
    assert login(app, "fenbo", PASSWORD)[1].status_code == 200  # the old password is gone
    again = logged_in(app, "fenbo", TEMPORARY)
    assert again.get("/queue").headers["Location"].endswith("/account/password")
    assert app.test_client().get("/api/v1/cases", headers=bearer(app, "fenbo", row.session_version)).get_json() == {
        "error": "password_change_required", "message": "请先登录网页修改初始密码"}
    assert entries(dispatch, "admin.password_reset")[-1].detail == {"user": "fenbo"}


def test_change_role_and_scope_takes_effect_at_the_next_request(app, dispatch):
    user = logged_in(app, "fenbo")
    assert user.get("/queue").status_code == 200
    response = post(logged_in(app), "/admin/users/fenbo", display_name="海州区领导", role="leader",
                    district="210902", department="")
    assert response.status_code == 302
    assert user.get("/queue").status_code == 403  # same session, new role
    entry = entries(dispatch, "admin.role_change")[-1]
    assert entry.detail == {"user": "fenbo", "role": "leader", "previous_role": "dispatcher"}
    refused = post(logged_in(app), "/admin/users/fenbo", display_name="x", role="handler", district="",
                   department="")
    assert refused.status_code == 400 and "部门办理人必须选择所属部门" in refused.get_data(as_text=True)
    assert account(dispatch, "fenbo").role == "leader"


def test_lock_and_unlock(app, dispatch):
    user = logged_in(app, "fenbo")
    token = bearer(app, "fenbo")
    admin = logged_in(app)
    assert post(admin, "/admin/users/fenbo/lock").status_code == 302
    assert not account(dispatch, "fenbo").active
    assert user.get("/queue").status_code == 302 and not api_ok(app, token)
    assert login(app, "fenbo")[1].status_code == 200  # refused, like a wrong password
    assert post(admin, "/admin/users/fenbo/unlock").status_code == 302
    assert logged_in(app, "fenbo").get("/queue").status_code == 200
    assert not api_ok(app, token)  # the lock moved the session version: old tokens stay dead
    assert [e.detail["user"] for e in entries(dispatch, "admin.lock") + entries(dispatch, "admin.unlock")] == [
        "fenbo", "fenbo"]


def test_an_admin_cannot_lock_or_demote_themselves(app, dispatch):
    admin = logged_in(app)
    response = post(admin, "/admin/users/root/lock")
    assert response.status_code == 302
    assert "不能锁定自己的账号" in admin.get(response.headers["Location"]).get_data(as_text=True)
    assert account(dispatch, "root").active
    post(admin, "/admin/users/root", display_name="root", role="supervisor", district="", department="")
    assert account(dispatch, "root").role == "admin"
    assert entries(dispatch, "admin.lock") == [] and entries(dispatch, "admin.role_change") == []


def test_admin_ends_all_sessions_of_an_account(app, dispatch):
    laptop, phone = logged_in(app, "fenbo"), logged_in(app, "fenbo")
    assert post(logged_in(app), "/admin/users/fenbo/logout-all").status_code == 302
    assert laptop.get("/queue").status_code == 302 and phone.get("/queue").status_code == 302
    assert entries(dispatch, "admin.logout_all")[-1].detail == {"user": "fenbo"}


def test_unknown_account_is_404(app):
    admin = logged_in(app)
    assert admin.get("/admin/users/nobody").status_code == 404
    assert post(admin, "/admin/users/nobody/lock").status_code == 404


def test_admin_forms_need_csrf(app, dispatch):
    admin = logged_in(app)
    assert admin.post("/admin/users/fenbo/lock").status_code == 400
    assert account(dispatch, "fenbo").active


def test_own_password_change_ends_the_other_sessions_only(app, dispatch):
    here, elsewhere = logged_in(app, "fenbo"), logged_in(app, "fenbo")
    wrong = post(here, "/account/password", current="not-it", new="another-secret-9", confirm="another-secret-9")
    assert wrong.status_code == 400 and "当前密码不正确" in wrong.get_data(as_text=True)
    assert post(here, "/account/password", current=PASSWORD, new="another-secret-9",
                confirm="another-secret-9").status_code == 302
    assert here.get("/queue").status_code == 200
    assert elsewhere.get("/queue").status_code == 302


# -- API tokens ------------------------------------------------------------------------

def test_tokens_expire_after_the_configured_age(build_service, monkeypatch):
    service = build_service("dispatch", token_max_age_days=2)
    with service.uow() as uow:
        uow.add(StaffUser(username="fenbo", display_name="x", role="dispatcher", district="210902",
                          password_hash=hash_password(PASSWORD), active=True))
        uow.commit()
    app = create_app(service)
    start = tokens._wall_clock()
    monkeypatch.setattr(tokens, "_wall_clock", lambda: start)
    headers = bearer(app, "fenbo")
    monkeypatch.setattr(tokens, "_wall_clock", lambda: start + 2 * 86400 - 5)
    assert api_ok(app, headers)
    monkeypatch.setattr(tokens, "_wall_clock", lambda: start + 2 * 86400 + 5)
    assert not api_ok(app, headers)


def test_tokens_are_revoked_with_the_accounts_sessions(app, dispatch):
    headers = bearer(app, "fenbo")
    assert api_ok(app, headers)
    post(logged_in(app, "fenbo"), "/logout-all")
    assert not api_ok(app, headers)
    assert api_ok(app, bearer(app, "fenbo", account(dispatch, "fenbo").session_version))


def test_old_format_and_forged_tokens_are_refused(app):
    from itsdangerous import URLSafeSerializer
    old = URLSafeSerializer(app.config["SECRET_KEY"], salt="fzt-api-token").dumps({"u": "fenbo"})
    assert not api_ok(app, {"Authorization": f"Bearer {old}"})
    assert not api_ok(app, {"Authorization": f"Bearer {make_token('another-secret', 'fenbo')}"})


def test_fzt_token_prints_the_expiry(build_service, tmp_path, monkeypatch):
    from services.common import cli
    for name in SERVICES:  # `fzt user add` writes to all four
        build_service(name)
    monkeypatch.setenv("FZT_ENV", "test")
    monkeypatch.setenv("FZT_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("FZT_TOKEN_MAX_AGE_DAYS", "7")
    for name in ["FZT_DATABASE_URL", *(f"FZT_DATABASE_URL_{s.upper()}" for s in SERVICES)]:
        monkeypatch.delenv(name, raising=False)
    added = CliRunner().invoke(cli.main, ["user", "add", "fenbo", "--name", "分拨员", "--role", "dispatcher",
                                          "--district", "210902", "--password", PASSWORD])
    assert added.exit_code == 0, added.output
    weak = CliRunner().invoke(cli.main, ["user", "add", "fenbo", "--name", "x", "--role", "dispatcher",
                                         "--password", "password1234"])
    assert weak.exit_code == 2 and "常见" in weak.output
    result = CliRunner().invoke(cli.main, ["token", "dispatch", "fenbo"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert "\n" not in token and "expires" in result.stderr and "FZT_TOKEN_MAX_AGE_DAYS=7" in result.stderr
    assert tokens.read_token("dev-only-secret-change-me", token, 7 * 86400) == ("fenbo", 0)
