"""Optional single sign-on through an OpenID Connect provider (Authlib), off by default.

With ``FZT_OIDC_ISSUER`` (and client id/secret) set, the login page offers a button that sends
the user to the provider (authorization code flow, state and nonce checked by Authlib, the ID
token's signature checked against the provider's JWKS). Its claims name the account, its role
and its scope (``map_claims``, config.OidcSettings); the account in this service's
``staff_users`` is created or brought in line with them at each login, and an account an admin
locked here stays locked. Passwords of such accounts are unusable (``!sso``). Without the
settings both routes answer 404. docs/security.md, "Single sign-on".
"""
from __future__ import annotations

from dataclasses import dataclass

import logging

from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from joserfc.errors import JoseError
from requests import RequestException
from flask import Blueprint, abort, current_app, flash, redirect, request, session, url_for
from sqlalchemy import select

from .. import audit
from ..accounts import USERNAME
from ..models import StaffUser
from ..reference import DEPARTMENTS, district_code
from .auth import safe_next, start_session
from .roles import ROLES, scope_problem

bp = Blueprint("oidc", __name__, url_prefix="/login/sso")
log = logging.getLogger(__name__)
SSO_PASSWORD_HASH = "!sso"  # matches no password: werkzeug's check needs "method$salt$hash"
_NEXT_KEY = "fzt_sso_next"


class Refused(Exception):
    """The provider's answer does not name a usable account (the reason is logged in the audit)."""


@dataclass(frozen=True)
class SsoAccount:
    username: str
    display_name: str
    role: str
    district: str | None
    department: str | None


def map_claims(settings, claims: dict) -> SsoAccount:
    """The account the ID token's ``claims`` name, under ``settings`` (config.OidcSettings)."""
    username = claims.get(settings.username_claim)
    if not isinstance(username, str) or not USERNAME.match(username.strip().lower()):
        raise Refused(f"claim {settings.username_claim} missing or not a valid username")
    username = username.strip().lower()
    values = claims.get(settings.role_claim)
    values = [values] if isinstance(values, str) else values if isinstance(values, list) else []
    mapping = dict(settings.role_map) if settings.role_map else {key: key for key in ROLES}
    roles = list(dict.fromkeys(mapping[v] for v in values if isinstance(v, str) and v in mapping))
    if len(roles) != 1 or roles[0] not in ROLES:
        raise Refused(f"claim {settings.role_claim} maps to {len(roles)} roles, need exactly one")
    district = claims.get(settings.district_claim) or None
    if district is not None:
        district = district_code(str(district))
        if district is None:
            raise Refused(f"claim {settings.district_claim} names no district")
    department = claims.get(settings.department_claim) or None
    if department is not None and department not in DEPARTMENTS:
        raise Refused(f"claim {settings.department_claim} names no department")
    problem = scope_problem(roles[0], district, department)
    if problem:
        raise Refused(problem)
    name = claims.get(settings.name_claim)
    display_name = name.strip()[:100] if isinstance(name, str) and name.strip() else username
    return SsoAccount(username, display_name, roles[0], district, department)


def provision(service, account: SsoAccount) -> StaffUser:
    """Create the account, or bring role, scope and name in line with the provider's claims;
    Refused if an admin locked it here. Audited with the login."""
    with service.uow() as uow:
        row = uow.session.scalars(select(StaffUser).where(StaffUser.username == account.username)).first()
        if row is not None and not row.active:
            raise Refused("account locked in this service")
        if row is None:
            row = StaffUser(username=account.username, password_hash=SSO_PASSWORD_HASH, active=True,
                            failed_logins=0, session_version=0, must_change_password=False)
            uow.add(row)
        row.display_name, row.role = account.display_name, account.role
        row.district, row.department = account.district, account.department
        uow.session.flush()
        audit.record(uow, row, "auth.sso_login", role=row.role, district=row.district, department=row.department)
        uow.commit()
        return row


def init_app(app) -> None:
    app.register_blueprint(bp)
    settings = app.extensions["fzt"].settings.oidc
    if settings.enabled:
        oauth = OAuth(app)
        oauth.register("sso", client_id=settings.client_id, client_secret=settings.client_secret,
                       server_metadata_url=f"{settings.issuer}/.well-known/openid-configuration",
                       client_kwargs={"scope": settings.scopes})
        app.extensions["fzt_oidc"] = oauth.sso


def _client():
    client = current_app.extensions.get("fzt_oidc")
    if client is None:
        abort(404)  # single sign-on is not configured
    return client


@bp.app_context_processor
def _login_button():
    settings = current_app.extensions["fzt"].settings.oidc
    return {"sso_label": settings.label if settings.enabled else None}


@bp.get("/")
def login():
    client = _client()
    session[_NEXT_KEY] = safe_next(request.args.get("next", "")) or ""
    return client.authorize_redirect(url_for("oidc.callback", _external=True))


@bp.get("/callback")
def callback():
    client = _client()
    service = current_app.extensions["fzt"]
    try:
        token = client.authorize_access_token()
        account = map_claims(service.settings.oidc, token.get("userinfo") or {})
        row = provision(service, account)
    # OAuthError: state, provider error; JoseError: a bad or forged ID token; RequestException:
    # the provider cannot be reached; Refused: the claims name no usable account.
    except (OAuthError, JoseError, RequestException, Refused, ValueError, KeyError) as err:
        log.warning("single sign-on refused: %s: %s", type(err).__name__, err)
        audit.record_now(service, "", "auth.sso_refused", reason=f"{type(err).__name__}: {err}"[:200])
        flash("统一身份认证登录未成功，请联系管理员或用账号密码登录", "error")
        return redirect(url_for("auth.login"))
    target = session.get(_NEXT_KEY) or url_for("home")
    start_session(row)
    return redirect(target)
