"""The signed-in user's own account: change the password (also the forced change after an
admin chose it, auth._require_password_change). ``init_app`` registers this page, the admin
pages (admin.py) and single sign-on (oidc.py)."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import DataRequired, EqualTo, Length

from .. import accounts
from ..passwords import MAX_LENGTH, MIN_LENGTH
from . import admin, auth, oidc

bp = Blueprint("account", __name__, url_prefix="/account")


def init_app(app) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(admin.bp)
    oidc.init_app(app)


class PasswordForm(FlaskForm):
    current = PasswordField("当前密码", validators=[DataRequired("请输入当前密码"), Length(max=MAX_LENGTH)])
    new = PasswordField("新密码", validators=[DataRequired("请输入新密码"), Length(max=MAX_LENGTH)],
                        description=f"至少{MIN_LENGTH}个字符；不能包含用户名，不能是常见密码")
    confirm = PasswordField("再次输入新密码", validators=[DataRequired("请再次输入新密码"),
                                                   EqualTo("new", "两次输入的新密码不一致")])


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password():
    form = PasswordForm()
    status = 200
    if form.validate_on_submit():
        try:
            version = accounts.change_own_password(current_app.extensions["fzt"], current_user,
                                                   form.current.data, form.new.data)
        except accounts.Invalid as err:
            getattr(form, err.field).errors = [str(err)]
        else:
            auth.keep_session(version)
            flash("密码已修改；本账号在其他设备上的登录和访问令牌已失效", "success")
            return redirect(url_for("home"))
    if form.errors:
        status = 400
    return render_template("account_password.html", form=form,
                           forced=current_user.must_change_password), status
