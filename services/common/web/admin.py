"""Admin pages for this service's staff accounts (/admin/users): list, create, change role and
scope, reset the password (the user must change it at the next login), lock and unlock, end
all sessions. Admins only; every act is audited (services/common/accounts.py).

Each service keeps its own ``staff_users`` table, so these pages change the accounts of the
service they belong to; ``fzt user add`` changes all four at once (docs/security.md).
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from .. import accounts
from ..passwords import MAX_LENGTH, MIN_LENGTH
from ..reference import DEPARTMENTS, DISTRICTS
from .auth import roles_required
from .roles import ROLES

bp = Blueprint("admin", __name__, url_prefix="/admin")

_PASSWORD_HINT = f"临时密码，至少{MIN_LENGTH}个字符，不能包含用户名，不能是常见密码；用户首次登录后须修改"


def _service():
    return current_app.extensions["fzt"]


class RoleForm(FlaskForm):
    display_name = StringField("姓名（显示名）", validators=[DataRequired("请填写姓名"), Length(max=100)])
    role = SelectField("角色", choices=[(key, role.name) for key, role in ROLES.items()])
    district = SelectField("所属县区", choices=[("", "不限（全市）"), *DISTRICTS.items()],
                           description="分拨员、网格员、调解员、中心接待员、领导按县区划分；网格员必须选择")
    department = SelectField("所属部门", choices=[("", "无"), *DEPARTMENTS.items()],
                             description="部门办理人必须选择")


class ResetForm(FlaskForm):
    password = PasswordField("临时密码", validators=[DataRequired("请设置密码"), Length(max=MAX_LENGTH)],
                             description=_PASSWORD_HINT)
    confirm = PasswordField("再次输入密码", validators=[DataRequired("请再次输入密码"),
                                                  EqualTo("password", "两次输入的密码不一致")])


class NewUserForm(RoleForm, ResetForm):
    username = StringField("用户名", validators=[DataRequired("请填写用户名"), Length(max=50)],
                           description="登录用，2至50位小写字母、数字或 _ . -，创建后不能修改")


def _show_error(form, err):
    """Next to the field the error is about, or as a message if the form has no such field."""
    field = getattr(form, err.field, None) if err.field else None
    if field is None:
        flash(str(err), "error")
    else:
        field.errors = [*field.errors, str(err)]


@bp.get("/users")
@roles_required("admin")
def users():
    return render_template("admin_users.html", rows=accounts.list_accounts(_service()),
                           now=_service().clock.now(), ROLES=ROLES)


@bp.route("/users/new", methods=["GET", "POST"])
@roles_required("admin")
def new_user():
    form = NewUserForm()
    if form.validate_on_submit():
        try:
            accounts.create_account(_service(), current_user, form.username.data, form.display_name.data,
                                    form.role.data, form.district.data, form.department.data, form.password.data)
        except accounts.Invalid as err:
            _show_error(form, err)
        else:
            flash(f"账号 {form.username.data.strip().lower()} 已创建，请把初始密码当面或电话告知本人；"
                  "首次登录后须修改密码", "success")
            return redirect(url_for("admin.users"))
    return render_template("admin_user_new.html", form=form), 400 if request.method == "POST" else 200


def _account_or_404(username):
    try:
        return accounts.get_account(_service(), username)
    except accounts.NoSuchAccount:
        abort(404)


def _render_user(row, role_form=None, reset_form=None, status=200):
    role_form = role_form or RoleForm(formdata=None, display_name=row.display_name, role=row.role,
                                      district=row.district or "", department=row.department or "")
    return render_template("admin_user.html", row=row, role_form=role_form,
                           reset_form=reset_form or ResetForm(formdata=None), now=_service().clock.now(),
                           ROLES=ROLES), status


@bp.route("/users/<username>", methods=["GET", "POST"])
@roles_required("admin")
def user(username):
    """The account, and (POST) its name, role and scope."""
    row = _account_or_404(username)
    if request.method == "GET":
        return _render_user(row)
    form = RoleForm()
    if form.validate_on_submit():
        try:
            accounts.change_role(_service(), current_user, username, form.display_name.data, form.role.data,
                                 form.district.data, form.department.data)
        except accounts.Invalid as err:
            _show_error(form, err)
        else:
            flash("角色和范围已保存，用户下次操作时生效", "success")
            return redirect(url_for("admin.user", username=username))
    return _render_user(row, role_form=form, status=400)


@bp.post("/users/<username>/password")
@roles_required("admin")
def reset_password(username):
    row = _account_or_404(username)
    form = ResetForm()
    if form.validate_on_submit():
        try:
            accounts.reset_password(_service(), current_user, username, form.password.data)
        except accounts.Invalid as err:
            _show_error(form, err)
        else:
            flash(f"{username} 的密码已重置，其所有登录和访问令牌已失效；用户下次登录后须修改密码", "success")
            return redirect(url_for("admin.user", username=username))
    return _render_user(row, reset_form=form, status=400)


def _simple_act(username, act, done):
    _account_or_404(username)
    try:
        act(_service(), current_user, username)
    except accounts.Invalid as err:
        flash(str(err), "error")
    else:
        flash(done, "success")
    return redirect(url_for("admin.user", username=username))


@bp.post("/users/<username>/lock")
@roles_required("admin")
def lock(username):
    return _simple_act(username, accounts.lock, f"{username} 已锁定：不能登录，现有登录和访问令牌已失效")


@bp.post("/users/<username>/unlock")
@roles_required("admin")
def unlock(username):
    return _simple_act(username, accounts.unlock, f"{username} 已解锁，可以重新登录")


@bp.post("/users/<username>/logout-all")
@roles_required("admin")
def end_sessions(username):
    return _simple_act(username, accounts.end_sessions, f"{username} 在本服务的所有登录和访问令牌已失效")
