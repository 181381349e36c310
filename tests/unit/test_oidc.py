"""Single sign-on (services/common/web/oidc.py): the claim mapping, and the whole authorization
code flow against a small OpenID provider served on a local port (a Flask app issuing ID tokens
signed RS256 with joserfc, the library Authlib itself verifies them with)."""
from __future__ import annotations

import secrets
import threading
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask, jsonify, redirect, request
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select
from werkzeug.serving import make_server

from services.common.config import OidcSettings, from_env
from services.common.models import AuditEntry, StaffUser
from services.common.web.app import create_app
from services.common.web.oidc import Refused, SsoAccount, map_claims

CLIENT_ID, CLIENT_SECRET = "fzt-dispatch", "s3cret-for-tests"


# -- claims -> account -----------------------------------------------------------------

MAPPED = OidcSettings(issuer="https://idp.example", client_id="x", client_secret="y",
                      role_map=(("gov-dispatch", "dispatcher"), ("gov-leader", "leader")))


def test_claims_name_the_account_role_and_scope():
    claims = {"preferred_username": "Fenbo_Haizhou", "name": "海州区分拨员", "fzt_role": ["staff", "gov-dispatch"],
              "fzt_district": "海州区"}
    assert map_claims(MAPPED, claims) == SsoAccount("fenbo_haizhou", "海州区分拨员", "dispatcher", "210902", None)


def test_without_a_role_map_the_claim_carries_our_identifiers():
    plain = OidcSettings(issuer="https://idp.example")
    assert map_claims(plain, {"preferred_username": "bm", "fzt_role": "handler", "fzt_department": "zhujian"}) == \
        SsoAccount("bm", "bm", "handler", None, "zhujian")


@pytest.mark.parametrize("claims, why", [
    ({"fzt_role": "gov-dispatch"}, "preferred_username"),
    ({"preferred_username": "../admin", "fzt_role": "gov-dispatch"}, "preferred_username"),
    ({"preferred_username": "a1"}, "0 roles"),
    ({"preferred_username": "a1", "fzt_role": "admin"}, "0 roles"),  # not in the map: not granted
    ({"preferred_username": "a1", "fzt_role": ["gov-dispatch", "gov-leader"]}, "2 roles"),
    ({"preferred_username": "a1", "fzt_role": "gov-dispatch", "fzt_district": "北京"}, "no district"),
    ({"preferred_username": "a1", "fzt_role": "gov-dispatch", "fzt_department": "zhujian"}, "不属于某个部门"),
])
def test_claims_that_name_no_usable_account_are_refused(claims, why):
    with pytest.raises(Refused, match=why):
        map_claims(MAPPED, claims)


def test_settings_from_the_environment():
    settings = from_env({"FZT_OIDC_ISSUER": "https://idp.example/realms/fx/", "FZT_OIDC_CLIENT_ID": "a",
                         "FZT_OIDC_CLIENT_SECRET": "b", "FZT_OIDC_ROLE_MAP": "gov-dispatch=dispatcher, x = leader"})
    assert settings.oidc.enabled and settings.oidc.issuer == "https://idp.example/realms/fx"
    assert settings.oidc.role_map == (("gov-dispatch", "dispatcher"), ("x", "leader"))
    assert not from_env({}).oidc.enabled
    with pytest.raises(RuntimeError, match="FZT_OIDC_CLIENT_ID"):
        from_env({"FZT_OIDC_ISSUER": "https://idp.example"})


# -- the flow against a local provider -------------------------------------------------

class Provider:
    """Authorization endpoint (auto-approves the user in ``self.claims``), token endpoint
    (client secret checked), JWKS. ``self.sign_with`` lets a test forge tokens."""

    def __init__(self):
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.sign_with = self.key
        self.claims = {}
        self.codes = {}
        app = Flask("idp")

        @app.get("/.well-known/openid-configuration")
        def metadata():
            return jsonify(issuer=self.issuer, authorization_endpoint=f"{self.issuer}/authorize",
                           token_endpoint=f"{self.issuer}/token", jwks_uri=f"{self.issuer}/jwks",
                           response_types_supported=["code"], subject_types_supported=["public"],
                           id_token_signing_alg_values_supported=["RS256"])

        @app.get("/jwks")
        def jwks():
            return jsonify(KeySet([self.key]).as_dict(private=False))

        @app.get("/authorize")
        def authorize():
            assert request.args["client_id"] == CLIENT_ID and request.args["response_type"] == "code"
            code = secrets.token_urlsafe(8)
            self.codes[code] = request.args["nonce"]
            query = urlencode({"code": code, "state": request.args["state"]})
            return redirect(f"{request.args['redirect_uri']}?{query}")

        @app.post("/token")
        def token():
            auth = request.authorization
            if (auth.username, auth.password) != (CLIENT_ID, CLIENT_SECRET):
                return jsonify(error="invalid_client"), 401
            nonce = self.codes.pop(request.form["code"], None)
            if nonce is None:
                return jsonify(error="invalid_grant"), 400
            now = int(time.time())
            claims = {"iss": self.issuer, "aud": CLIENT_ID, "sub": "u-1", "iat": now, "exp": now + 300,
                      "nonce": nonce, **self.claims}
            id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.sign_with)
            return jsonify(access_token="at", token_type="Bearer", expires_in=300, id_token=id_token)

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def provider():
    idp = Provider()
    idp.thread.start()
    yield idp
    idp.server.shutdown()


@pytest.fixture
def sso(build_service, provider):
    oidc = OidcSettings(issuer=provider.issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                        role_map=(("gov-dispatch", "dispatcher"),))
    service = build_service("dispatch", oidc=oidc)
    return service, create_app(service)


def sign_in(app, next_url=None):
    """Follow the flow as a browser would: our app → provider → our callback."""
    client = app.test_client()
    start = client.get("/login/sso/" + (f"?next={next_url}" if next_url else ""))
    assert start.status_code == 302
    import requests
    answer = requests.get(start.headers["Location"], allow_redirects=False, timeout=5)
    back = urlsplit(answer.headers["Location"])
    assert back.path.endswith("/login/sso/callback")
    return client, client.get(f"{back.path}?{back.query}")


def test_login_page_offers_single_sign_on_only_when_configured(sso, build_service):
    _, app = sso
    assert "统一身份认证登录" in app.test_client().get("/login").get_data(as_text=True)
    plain = create_app(build_service("supervision"))
    assert "统一身份认证登录" not in plain.test_client().get("/login").get_data(as_text=True)
    assert plain.test_client().get("/login/sso/").status_code == 404


def test_a_provider_login_creates_the_account_and_signs_in(sso, provider):
    service, app = sso
    provider.claims = {"preferred_username": "fenbo_haizhou", "name": "海州区分拨员", "fzt_role": "gov-dispatch",
                       "fzt_district": "210902"}
    client, done = sign_in(app, next_url="/queue")
    assert done.status_code == 302 and done.headers["Location"] == "/queue"
    assert client.get("/queue").status_code == 200
    with service.uow() as uow:
        row = uow.session.scalars(select(StaffUser).where(StaffUser.username == "fenbo_haizhou")).one()
        entry = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "auth.sso_login")).one()
    assert (row.role, row.district, row.password_hash) == ("dispatcher", "210902", "!sso")
    assert entry.actor == "fenbo_haizhou" and entry.detail["role"] == "dispatcher"
    # the provider is the source of the role and scope: the next login brings them in line
    provider.claims["fzt_district"] = "210903"
    sign_in(app)
    with service.uow() as uow:
        assert uow.session.scalars(select(StaffUser.district).where(StaffUser.username == "fenbo_haizhou")).one() == "210903"


def test_a_forged_id_token_is_refused(sso, provider):
    service, app = sso
    provider.claims = {"preferred_username": "fenbo_haizhou", "fzt_role": "gov-dispatch"}
    provider.sign_with = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # not the published key
    client, done = sign_in(app)
    assert done.status_code == 302 and done.headers["Location"].endswith("/login")
    assert "统一身份认证登录未成功" in client.get("/login").get_data(as_text=True)
    with service.uow() as uow:
        assert uow.session.scalars(select(StaffUser)).first() is None
        assert uow.session.scalars(select(AuditEntry.action)).all() == ["auth.sso_refused"]


def test_an_account_locked_here_stays_locked(sso, provider):
    service, app = sso
    with service.uow() as uow:
        uow.add(StaffUser(username="fenbo_haizhou", display_name="x", role="dispatcher", password_hash="!sso",
                          active=False))
        uow.commit()
    provider.claims = {"preferred_username": "fenbo_haizhou", "fzt_role": "gov-dispatch"}
    client, done = sign_in(app)
    assert done.headers["Location"].endswith("/login") and client.get("/queue").status_code == 302


def test_a_callback_without_our_state_is_refused(sso):
    _, app = sso
    response = app.test_client().get("/login/sso/callback?code=abc&state=forged")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
