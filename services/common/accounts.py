"""Staff account commands: what the admin pages (web/admin.py) and the own-password page
(web/account.py) do, as plain functions on one service's ``staff_users`` table.

Each act and its audit entry commit together (``audit.record`` in the same unit of work);
a refused act changes and records nothing. Errors are ``Invalid`` (with the form field) or
``NoSuchAccount``; their messages are shown to the admin.
"""
from __future__ import annotations

import re

from sqlalchemy import select
from werkzeug.security import check_password_hash

from . import audit
from .models import StaffUser
from .passwords import password_problem
from .reference import DEPARTMENTS, DISTRICTS
from .web.auth import hash_password
from .web.roles import ROLES, scope_problem

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,49}$")


class Invalid(ValueError):
    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class NoSuchAccount(LookupError):
    pass


def list_accounts(service) -> list[StaffUser]:
    with service.uow() as uow:
        return list(uow.session.scalars(select(StaffUser).order_by(StaffUser.role, StaffUser.username)))


def get_account(service, username: str) -> StaffUser:
    with service.uow() as uow:
        return _row(uow, username)


def _row(uow, username) -> StaffUser:
    row = uow.session.scalars(select(StaffUser).where(StaffUser.username == username)).first()
    if row is None:
        raise NoSuchAccount(f"没有账号 {username}")
    return row


def _check_scope(role, district, department) -> None:
    if district and district not in DISTRICTS:
        raise Invalid("未知的县区", "district")
    if department and department not in DEPARTMENTS:
        raise Invalid("未知的部门", "department")
    problem = scope_problem(role, district, department)
    if problem:
        raise Invalid(problem, "role")


def _check_password(password, username, field="password") -> None:
    problem = password_problem(password, username)
    if problem:
        raise Invalid(problem, field)


def _not_self(actor, username, what) -> None:
    """An admin does not lock out or demote themselves (another admin can)."""
    if actor.username == username:
        raise Invalid(f"不能{what}自己的账号，请由另一位管理员操作", "username")


def create_account(service, actor, username, display_name, role, district, department, password) -> None:
    """A new account whose user must change the admin-chosen password at the first login."""
    username = (username or "").strip().lower()
    if not USERNAME.match(username):
        raise Invalid("用户名为2至50位小写字母、数字或 _ . -，以字母或数字开头", "username")
    if role not in ROLES:
        raise Invalid("未知的角色", "role")
    _check_scope(role, district, department)
    _check_password(password, username)
    with service.uow() as uow:
        if uow.session.scalars(select(StaffUser.id).where(StaffUser.username == username)).first():
            raise Invalid(f"用户名 {username} 已被使用", "username")
        uow.add(StaffUser(username=username, display_name=display_name.strip(), role=role,
                          district=district or None, department=department or None,
                          password_hash=hash_password(password), active=True, must_change_password=True,
                          failed_logins=0, session_version=0))
        audit.record(uow, actor, "admin.user_create", user=username, role=role, district=district or None,
                     department=department or None)
        uow.commit()


def change_role(service, actor, username, display_name, role, district, department) -> None:
    """Name, role and scope; effective at the user's next request (sessions read the row)."""
    if role not in ROLES:
        raise Invalid("未知的角色", "role")
    _check_scope(role, district, department)
    with service.uow() as uow:
        row = _row(uow, username)
        if role != row.role:
            _not_self(actor, username, "更改")
        before = {"role": row.role, "district": row.district, "department": row.department}
        row.display_name = display_name.strip() or row.display_name
        row.role, row.district, row.department = role, district or None, department or None
        after = {"role": row.role, "district": row.district, "department": row.department}
        changed = [k for k in after if after[k] != before[k]]
        audit.record(uow, actor, "admin.role_change", user=username, **{k: after[k] for k in changed},
                     **{f"previous_{k}": before[k] for k in changed})
        uow.commit()


def reset_password(service, actor, username, password) -> None:
    """A temporary password: every session and token of the account ends (the session
    version moves with the hash, auth.py), any lockout is cleared, and the user must choose
    their own password at the next login."""
    _check_password(password, username)
    with service.uow() as uow:
        row = _row(uow, username)
        row.password_hash = hash_password(password)
        row.must_change_password = True
        row.failed_logins, row.locked_until = 0, None
        audit.record(uow, actor, "admin.password_reset", user=username)
        uow.commit()


def lock(service, actor, username) -> None:
    """Disable the account until an admin unlocks it: logins, sessions and tokens stop now."""
    _not_self(actor, username, "锁定")
    with service.uow() as uow:
        row = _row(uow, username)
        row.active = False
        row.session_version = (row.session_version or 0) + 1
        audit.record(uow, actor, "admin.lock", user=username)
        uow.commit()


def unlock(service, actor, username) -> None:
    """Enable the account again and clear a lockout after wrong passwords."""
    with service.uow() as uow:
        row = _row(uow, username)
        row.active, row.failed_logins, row.locked_until = True, 0, None
        audit.record(uow, actor, "admin.unlock", user=username)
        uow.commit()


def end_sessions(service, actor, username) -> None:
    """Every session and API token of the account in this service ends."""
    with service.uow() as uow:
        row = _row(uow, username)
        row.session_version = (row.session_version or 0) + 1
        audit.record(uow, actor, "admin.logout_all", user=username)
        uow.commit()


def change_own_password(service, user, current, new) -> int:
    """The user's own new password; returns the account's new session version (every other
    session and token of the account ends)."""
    with service.uow() as uow:
        row = _row(uow, user.username)
        if not check_password_hash(row.password_hash, current or ""):
            raise Invalid("当前密码不正确", "current")
        _check_password(new, row.username, "new")
        if check_password_hash(row.password_hash, new):
            raise Invalid("新密码不能与当前密码相同", "new")
        row.password_hash = hash_password(new)  # moves session_version (auth.py)
        row.must_change_password = False
        audit.record(uow, user, "auth.password_change")
        uow.commit()
        return row.session_version
