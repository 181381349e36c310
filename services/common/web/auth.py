"""Staff login (Flask-Login, session cookie) and API bearer tokens (``tokens.py``, made with the CLI).

Roles and their scope: ``roles.py``. ``roles_required`` guards a view (admin passes every one).

Login security (docs/security.md): after ``LOCK_AFTER`` wrong passwords in a row an account is
locked for ``LOCK_FOR`` (on the service's platform clock); unknown usernames get the same answers
and about the same time, so the form does not tell whether an account exists. A session is
valid for ``SESSION_LIFETIME`` after login and only while its ``session_version`` matches the
account's: "logout everywhere" and a password change increment it.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from datetime import timedelta
from functools import wraps

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   session, url_for)
from flask_login import (LoginManager, UserMixin, current_user, login_required, login_user,
                         logout_user)
from flask_wtf import FlaskForm
from sqlalchemy import bindparam, event, select, update
from sqlalchemy.orm.base import NEVER_SET, NO_VALUE
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from ..models import StaffUser
from . import tokens
from .roles import ROLE_NAMES
from .tokens import make_token  # noqa: F401 (the CLI and tests make tokens through auth)

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "请先登录"

bp = Blueprint("auth", __name__)

LOCK_AFTER = 5  # wrong passwords in a row …
LOCK_FOR = timedelta(minutes=15)  # … lock the account this long
LOCKED_MESSAGE = "账号已锁定，请15分钟后再试或联系管理员"
WRONG_MESSAGE = "用户名或密码错误"
SESSION_LIFETIME = timedelta(hours=8)  # absolute, from login (one working day)
_SESSION_VERSION_KEY = "fzt_sv"
_LOGIN_AT_KEY = "fzt_login_at"
_wall_clock = time.time  # session age is real time, like the cookie's own signature timestamp


class Staff(UserMixin):
    def __init__(self, row: StaffUser):
        self.id = row.username
        self.username = row.username
        self.display_name = row.display_name
        self.role = row.role
        self.district = row.district
        self.department = row.department
        self.session_version = row.session_version or 0
        self.must_change_password = bool(row.must_change_password)

    @property
    def role_name(self):
        return ROLE_NAMES.get(self.role, self.role)


def _service():
    return current_app.extensions["fzt"]


# Every request of a logged-in user or token asks this: one autocommit SELECT of the columns
# Staff needs (no ORM session, no BEGIN/ROLLBACK round trips), built once.
_FIND_STAFF = select(StaffUser.username, StaffUser.display_name, StaffUser.role, StaffUser.district,
                     StaffUser.department, StaffUser.session_version, StaffUser.must_change_password
                     ).where(StaffUser.username == bindparam("username"), StaffUser.active.is_(True))


def find_staff(username: str):
    with _service().autocommit_engine.connect() as conn:
        row = conn.execute(_FIND_STAFF, {"username": username}).first()
    return Staff(row) if row else None


@login_manager.user_loader
def _load_user(username):
    """The session's user, unless the session is older than SESSION_LIFETIME or was opened
    before the account's last "logout everywhere" / password change."""
    login_at = session.get(_LOGIN_AT_KEY)  # sessions from before this check have none: log in again
    if not isinstance(login_at, (int, float)) or _wall_clock() - login_at > SESSION_LIFETIME.total_seconds():
        return None
    staff = find_staff(username)
    if staff is None or session.get(_SESSION_VERSION_KEY) != staff.session_version:
        return None
    return staff


@login_manager.request_loader
def _load_from_bearer(req):
    """The token's user, unless the token is too old, the account is disabled, or its
    session version moved on since the token was made (tokens.py)."""
    header = req.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    found = tokens.read_token(current_app.config["SECRET_KEY"], header[7:].strip(),
                              _service().settings.token_max_age_days * 86400)
    if found is None:
        return None
    staff = find_staff(found[0])
    return staff if staff is not None and staff.session_version == found[1] else None


@login_manager.unauthorized_handler
def _unauthorized():
    if "/api/" in request.path:
        return {"error": "unauthorized", "message": "需要登录或有效的访问令牌"}, 401
    # full_path lacks the /<service> mount point; keep it so the user comes back here.
    return redirect(url_for("auth.login", next=request.script_root + request.full_path.rstrip("?")))


def init_app(app) -> None:
    login_manager.init_app(app)
    app.register_blueprint(bp)
    app.before_request(_require_password_change)


# What an account that must change its password may still reach (the change page is in account.py).
_PASSWORD_CHANGE_EXEMPT = {"account.password", "auth.login", "auth.logout", "auth.logout_all", "static",
                           "healthz", "readyz", "metrics_endpoint"}


def _require_password_change():
    """An account whose password an admin chose (new account, reset) reaches nothing but the
    password page and logout until its user picks their own."""
    if request.endpoint is None or request.endpoint in _PASSWORD_CHANGE_EXEMPT:
        return None
    if not (current_user.is_authenticated and current_user.must_change_password):
        return None
    if "/api/" in request.path:
        return {"error": "password_change_required", "message": "请先登录网页修改初始密码"}, 403
    return redirect(url_for("account.password"))


def keep_session(session_version: int) -> None:
    """After the user changed their own password (which ends every session of the account),
    keep this one: it now carries the new version."""
    session[_SESSION_VERSION_KEY] = session_version


def roles_required(*roles):
    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role not in roles and current_user.role != "admin":
                abort(403)
            return view(*args, **kwargs)
        return wrapped
    return decorator


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


class LoginForm(FlaskForm):
    username = StringField("用户名", validators=[DataRequired("请输入用户名"), Length(max=50)])
    password = PasswordField("密码", validators=[DataRequired("请输入密码"), Length(max=200)])


def safe_next(target: str) -> str | None:
    """Only a local path: never another site (``//host``, ``/\\host``, ``http:…``)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in target):
        return None
    return target


# -- lockout ---------------------------------------------------------------------------

_DUMMY_HASH: list[str] = []  # computed once: unknown users pay for one scrypt check too
_PHANTOM_LIMIT = 10_000
_phantom_lock = threading.Lock()


def _burn_password_check(password: str) -> None:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hash_password("fzt-no-such-user"))
    check_password_hash(_DUMMY_HASH[0], password)


def _phantom_failure(username: str, now) -> bool:
    """Count a failed login for a username with no active account, in memory, exactly as
    for a real one; True if that name now reads as locked. (Per process and per service:
    good enough to keep the answers alike, nothing is stored.)"""
    phantoms = current_app.extensions.setdefault("fzt_phantom_logins", OrderedDict())
    with _phantom_lock:
        failures, locked_until = phantoms.pop(username, (0, None))
        if locked_until is not None and locked_until > now:
            phantoms[username] = (failures, locked_until)
            return True
        if locked_until is not None:  # an expired lock: a fresh start
            failures = 0
        failures += 1
        locked_until = now + LOCK_FOR if failures >= LOCK_AFTER else None
        phantoms[username] = (failures, locked_until)
        while len(phantoms) > _PHANTOM_LIMIT:
            phantoms.popitem(last=False)
        return locked_until is not None


def check_login(username: str, password: str):
    """("ok", row) | ("locked", None) | ("wrong", None), with the lockout bookkeeping done."""
    service = _service()
    now = service.clock.now()
    with service.uow() as uow:
        row = uow.session.scalars(select(StaffUser).where(
            StaffUser.username == username, StaffUser.active.is_(True))).first()
        if row is None:
            _burn_password_check(password)
            return ("locked" if _phantom_failure(username, now) else "wrong"), None
        if row.locked_until is not None and row.locked_until > now:
            _burn_password_check(password)  # the same time as any other answer
            return "locked", None
        if check_password_hash(row.password_hash, password):
            if row.failed_logins or row.locked_until is not None:
                row.failed_logins, row.locked_until = 0, None
                uow.commit()
            return "ok", row
        if row.locked_until is not None:  # the lock has run out: five fresh tries
            row.failed_logins, row.locked_until = 0, None
            uow.session.flush()
        # Counted in the database, so concurrent attempts (and processes) add up.
        uow.session.execute(update(StaffUser).where(StaffUser.id == row.id)
                            .values(failed_logins=StaffUser.failed_logins + 1))
        failures = uow.session.scalar(select(StaffUser.failed_logins).where(StaffUser.id == row.id))
        if failures >= LOCK_AFTER:
            uow.session.execute(update(StaffUser).where(StaffUser.id == row.id)
                                .values(locked_until=now + LOCK_FOR))
        uow.commit()
        return ("locked" if failures >= LOCK_AFTER else "wrong"), None


def unlock(service, username: str) -> bool:
    """Clear ``username``'s failed logins and lock in ``service``; False if no such account."""
    with service.uow() as uow:
        done = uow.session.execute(update(StaffUser).where(StaffUser.username == username)
                                   .values(failed_logins=0, locked_until=None)).rowcount
        uow.commit()
    return bool(done)


# -- sessions --------------------------------------------------------------------------

@event.listens_for(StaffUser.password_hash, "set", active_history=True)
def _password_changed(target, value, oldvalue, _initiator):
    """A new password ends every session opened with the old one (``fzt user add`` on an
    existing account goes through here)."""
    if oldvalue not in (NO_VALUE, NEVER_SET, None) and value != oldvalue:
        target.session_version = (target.session_version or 0) + 1


def end_all_sessions(service, username: str) -> None:
    """Increment the account's session version: every session of it in ``service`` ends."""
    with service.uow() as uow:
        uow.session.execute(update(StaffUser).where(StaffUser.username == username)
                            .values(session_version=StaffUser.session_version + 1))
        uow.commit()


_LOGIN_ACTIONS = {"ok": "auth.login", "wrong": "auth.login_failed", "locked": "auth.login_locked"}


def _audit(actor, action):
    from .. import audit  # here, not at the top: audit's pages import this module
    audit.record_now(_service(), actor, action)


def start_session(row) -> None:
    """Log ``row`` in (password or single sign-on, oidc.py)."""
    session.clear()  # nothing from before the login survives it
    login_user(Staff(row))
    session.permanent = True  # the cookie expires after PERMANENT_SESSION_LIFETIME
    session[_SESSION_VERSION_KEY] = row.session_version or 0
    session[_LOGIN_AT_KEY] = int(_wall_clock())


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        outcome, row = check_login(form.username.data, form.password.data)
        _audit(row if outcome == "ok" else form.username.data, _LOGIN_ACTIONS[outcome])
        if outcome == "ok":
            start_session(row)
            return redirect(safe_next(request.args.get("next", "")) or url_for("home"))
        flash(LOCKED_MESSAGE if outcome == "locked" else WRONG_MESSAGE, "error")
    return render_template("login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    logout_user()
    session.clear()
    flash("已退出登录", "info")
    return redirect(url_for("auth.login"))


@bp.route("/logout-all", methods=["POST"])
@login_required
def logout_all():
    """End every session of the current account in this service (other browsers too)."""
    end_all_sessions(_service(), current_user.username)
    _audit(current_user, "auth.logout_all")
    logout_user()
    session.clear()
    flash("已在所有设备上退出登录", "info")
    return redirect(url_for("auth.login"))
