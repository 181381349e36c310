"""Staff login (Flask-Login, session cookie) and API bearer tokens (signed, made with the CLI).

Roles are coarse for now: admin, dispatcher (scoped to a district), handler (scoped to a
department), chief (the chief handler, 首席办事员), intake_operator, supervisor, mediator. ``roles_required`` guards a view.
"""
from __future__ import annotations

from functools import wraps

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from ..models import StaffUser

ROLE_NAMES = {
    "admin": "系统管理员",
    "dispatcher": "分拨员",
    "handler": "部门办理人",
    "chief": "首席办事员",
    "intake_operator": "受理员",
    "supervisor": "督办员",
    "mediator": "调解员",
}

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "请先登录"

bp = Blueprint("auth", __name__)


class Staff(UserMixin):
    def __init__(self, row: StaffUser):
        self.id = row.username
        self.username = row.username
        self.display_name = row.display_name
        self.role = row.role
        self.district = row.district
        self.department = row.department

    @property
    def role_name(self):
        return ROLE_NAMES.get(self.role, self.role)


def _service():
    return current_app.extensions["fzt"]


def find_staff(username: str):
    with _service().uow() as uow:
        row = uow.session.scalars(select(StaffUser).where(StaffUser.username == username,
                                                          StaffUser.active.is_(True))).first()
        return Staff(row) if row else None


@login_manager.user_loader
def _load_user(username):
    return find_staff(username)


def _token_serializer():
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="fzt-api-token")


def make_token(secret_key: str, username: str) -> str:
    return URLSafeSerializer(secret_key, salt="fzt-api-token").dumps({"u": username})


@login_manager.request_loader
def _load_from_bearer(req):
    header = req.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    try:
        data = _token_serializer().loads(header[7:].strip())
    except BadSignature:
        return None
    return find_staff(data.get("u", "")) if isinstance(data, dict) else None


@login_manager.unauthorized_handler
def _unauthorized():
    if "/api/" in request.path:
        return {"error": "unauthorized", "message": "需要登录或有效的访问令牌"}, 401
    # full_path lacks the /<service> mount point; keep it so the user comes back here.
    return redirect(url_for("auth.login", next=request.script_root + request.full_path.rstrip("?")))


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


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        with _service().uow() as uow:
            row = uow.session.scalars(select(StaffUser).where(
                StaffUser.username == form.username.data, StaffUser.active.is_(True))).first()
            ok = row is not None and check_password_hash(row.password_hash, form.password.data)
        if ok:
            login_user(Staff(row))
            target = request.args.get("next", "")
            # Only local paths: never redirect to another site.
            if not target.startswith("/") or target.startswith("//"):
                target = url_for("home")
            return redirect(target)
        flash("用户名或密码错误", "error")
    return render_template("login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    logout_user()
    flash("已退出登录", "info")
    return redirect(url_for("auth.login"))
