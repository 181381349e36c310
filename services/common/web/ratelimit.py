"""Rate limits on public endpoints (docs/security.md, "Rate limits"), with Flask-Limiter.

One ``Limiter`` per app, counting in the service's own database (``ratelimits.SqlStorage``),
so a limit holds across every web process of the service. Views ask for a kind of limit with
``@limited("submit")``; ``init_app`` (after the blueprints are registered) wraps each marked
view. The staff login form of every service (``auth.login``) is limited here by endpoint.

Kinds, each from ``Settings.rate_limits`` (FZT_RATE_LIMIT_*):

* ``submit``: per client address, every POST counted, one budget shared by every submission
  endpoint of the service (form, API, Open311); and per phone number, counting only stored
  submissions (a citizen correcting a typo is not punished; a replayed idempotent request is
  free). The phone is counted under a keyed hash, never stored as such.
* ``lookup``: per client address, requests that carry a tracking code.
* ``login``: per client address, failed logins only (many staff behind one office address
  log in every morning; guessing across usernames fails a lot).

The client address is ``request.remote_addr``: the socket peer, or with FZT_PROXY_HOPS the
address those trusted proxies report (``ProxyFix`` in app.py rewrites it first).

A refusal is a 429 with ``Retry-After`` (and the X-RateLimit-* headers); the view's blueprint
may render it (the citizen form keeps what was typed; Open311 answers in its error format),
otherwise JSON under ``/api/`` and the error page elsewhere. Nothing runs, so nothing is stored.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import re
import time

from flask import current_app, g, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits import parse_many

from ..ratelimits import STORAGE_URI

SUBMIT, LOOKUP, LOGIN = "submit", "lookup", "login"
SUBMIT_PHONE = "submit_phone"  # the scope of the per-phone limit (RateLimitExceeded.limit.scope)
MESSAGES = {
    SUBMIT: "提交过于频繁，请{wait}后再试。紧急情况请拨打12345热线。",
    SUBMIT_PHONE: "该联系电话近期提交的诉求较多，请{wait}后再试；如有新情况，可拨打12345热线补充。",
    LOOKUP: "查询过于频繁，请{wait}后再试。",
    LOGIN: "登录失败次数过多，请{wait}后再试。",
}
LOGIN_ENDPOINT = "auth.login"


def limited(kind: str, replay=None):
    """Mark a view for the limits of ``kind`` (applied by ``init_app``). ``replay()``: whether
    this request repeats a submission already stored (an idempotency key seen before); such a
    retry is answered even when the phone's budget is spent."""
    def mark(view):
        view.rate_limit_kind, view.rate_limit_replay = kind, replay
        return view
    return mark


def replayed() -> None:
    """The request answered an earlier submission again (idempotency): not counted per phone."""
    g.fzt_replayed = True


def normalized_phone(value) -> str:
    """Digits only, so "0418-1234567" and "04181234567" count together; "" when too short."""
    digits = re.sub(r"\D", "", value) if isinstance(value, str) else ""
    return digits if len(digits) >= 7 else ""


def _submitted_phone() -> str:
    if request.is_json:
        payload = request.get_json(silent=True)
        return normalized_phone(payload.get("phone") if isinstance(payload, dict) else None)
    return normalized_phone(request.form.get("phone"))


def _phone_key() -> str:
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, _submitted_phone().encode(), hashlib.sha256).hexdigest()[:32]


def _stored(response) -> bool:
    return response.status_code in (201, 302) and not g.get("fzt_replayed", False)


def _failed_login(response) -> bool:
    return not 300 <= response.status_code < 400


def _without_tracking_code() -> bool:
    return not request.values.get("tracking_code", "").strip()


def retry_after_seconds(app=None) -> int:
    limiter = (app or current_app).extensions["fzt_limiter"]
    current = limiter.current_limit
    return max(1, math.ceil(current.reset_at - time.time())) if current else 60


def refusal_message(err: RateLimitExceeded) -> str:
    """The Chinese sentence for a refusal, with the wait in minutes (or seconds)."""
    seconds = retry_after_seconds()
    wait = f"{seconds}秒" if seconds < 60 else f"{math.ceil(seconds / 60)}分钟"
    return MESSAGES.get(err.limit.scope, MESSAGES[SUBMIT]).format(wait=wait)


def check_settings(limits) -> None:
    """Refuse a limit string that ``limits`` cannot read, naming the variable."""
    for name in ("submit_ip", "submit_phone", "lookup_ip", "login_ip"):
        value = getattr(limits, name)
        try:
            parse_many(value)
        except ValueError:
            raise RuntimeError(f"FZT_RATE_LIMIT_{name.upper()}={value!r} is not a rate limit "
                               "(e.g. 30/hour or '10 per hour;50/day')") from None


def init_app(app, service, error) -> Limiter | None:
    """Wrap the marked views and the login form; ``error(status, message, code)`` renders a
    refusal where no blueprint handler does."""
    settings = service.settings.rate_limits
    if not settings.enabled:
        return None
    check_settings(settings)

    @app.after_request
    def _retry_after_on_refusals_only(response):
        # Flask-Limiter adds Retry-After to every limited response; it only means something
        # on a refusal. (Registered before the limiter's own hook, so it runs after it.)
        if response.status_code < 400:
            response.headers.pop("Retry-After", None)
        return response

    limiter = Limiter(get_remote_address, storage_uri=STORAGE_URI, storage_options={"engine": service.engine},
                      strategy="fixed-window", headers_enabled=True)
    # Before the limiter's own hooks: its header values come from this request's counts.
    app.before_request(lambda: limiter.storage.remember_within_request())  # storage exists after init_app
    app.teardown_request(lambda _exc: limiter.storage.forget())
    limiter.init_app(app)
    app.extensions["fzt_limiter"] = limiter
    per_ip = {SUBMIT: limiter.shared_limit(settings.submit_ip, scope=SUBMIT, methods=["POST"]),
              LOOKUP: limiter.shared_limit(settings.lookup_ip, scope=LOOKUP, exempt_when=_without_tracking_code)}

    def per_phone(view):
        replay = getattr(view, "rate_limit_replay", None) or (lambda: False)
        return limiter.shared_limit(settings.submit_phone, scope=SUBMIT_PHONE, key_func=_phone_key, methods=["POST"],
                                    exempt_when=lambda: not _submitted_phone() or replay(),
                                    deduct_when=_stored)(view)

    login = limiter.shared_limit(settings.login_ip, scope=LOGIN, methods=["POST"], deduct_when=_failed_login)
    for endpoint, view in list(app.view_functions.items()):
        kind = LOGIN if endpoint == LOGIN_ENDPOINT else getattr(view, "rate_limit_kind", None)
        if kind == SUBMIT:
            view = per_ip[SUBMIT](per_phone(view))
        elif kind == LOOKUP:
            view = per_ip[LOOKUP](view)
        elif kind == LOGIN:
            view = login(view)
        elif kind is not None:
            raise ValueError(f"unknown rate limit kind {kind!r} on {endpoint}")
        app.view_functions[endpoint] = view

    @app.errorhandler(RateLimitExceeded)
    def _refused(err):
        return error(429, refusal_message(err), "rate_limited")

    return limiter
