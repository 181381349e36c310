"""The Flask app factory shared by the four services.

Each service's app is mounted under ``/<service>`` (``prefixed``), in one process or four,
so URLs are the same in both modes. Every form is CSRF-protected; JSON API requests
authenticated with a bearer token are exempt (no cookie, nothing to forge).
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta, timezone
from pathlib import Path

from flask import Flask, Response, g, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.middleware.proxy_fix import ProxyFix

from ..observability import bind_case, metrics_for, readiness_response, unbind
from ..reference import CATEGORIES, CHANNELS, DEPARTMENTS, DISTRICTS
from .. import audit, uploads
from . import account, auth, hostile, ops, privacy, ratelimit, security

csrf = CSRFProtect()
log = logging.getLogger(__name__)

CHINA_TZ = timezone(timedelta(hours=8))
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def csrf_exempt(view):
    """Mark a public JSON endpoint that uses no session (so CSRF cannot apply)."""
    view.csrf_exempt = True
    return view


def create_app(service, test_config: dict | None = None) -> Flask:
    definition = service.definition
    app = Flask(f"services.{service.name}", template_folder="templates",
                static_folder=str(STATIC), static_url_path="/static")
    app.jinja_loader.searchpath.append(str(TEMPLATES))
    app.config.update(
        SECRET_KEY=service.settings.secret_key,
        SESSION_COOKIE_NAME=f"fzt_{service.name}",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=service.settings.production,
        PERMANENT_SESSION_LIFETIME=auth.SESSION_LIFETIME,
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_CHECK_DEFAULT=False,  # checked in _check_csrf below
    )
    app.json.ensure_ascii = False
    if test_config:
        app.config.update(test_config)
    app.extensions["fzt"] = service
    if service.settings.proxy_hops:
        hops = service.settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)

    csrf.init_app(app)
    hostile.init_app(app)  # NUL, lone surrogates, too-deep JSON: 400, not 500 (docs/security.md)
    security.init_app(app, production=service.settings.production)  # headers: docs/security.md
    auth.init_app(app)  # login, lockout, sessions, tokens, forced password change
    account.init_app(app)  # own password, admin pages (/admin/users), single sign-on
    app.register_blueprint(ops.bp)
    audit.init_app(app, service)  # /audit pages, request address for entries: docs/security.md
    privacy.init_app(app)  # mask_phone, mask_name filters
    uploads.init_app(app, service.settings)  # body limit (413), docs/uploads.md
    for blueprint in definition.blueprints():
        app.register_blueprint(blueprint)
    ratelimit.init_app(app, service, _error)  # limits on public endpoints: docs/security.md

    metrics = metrics_for(service)

    @app.before_request
    def _observe_start():
        # Request latency, and the case number as log correlation id when the URL names one.
        g.fzt_started = time.perf_counter()
        g.fzt_log_context = bind_case((request.view_args or {}).get("case_no"), service.name)

    @app.after_request
    def _observe_end(response):
        started = g.pop("fzt_started", None)
        if started is not None:
            metrics.request_done(request.endpoint or "unmatched", request.method,
                                 response.status_code, time.perf_counter() - started)
        return response

    @app.teardown_request
    def _forget_case(_exc):
        tokens = g.pop("fzt_log_context", None)
        if tokens:
            unbind(tokens)

    @app.before_request
    def _check_csrf():
        # Bearer-token API calls carry no cookie, and public JSON endpoints (marked with
        # ``csrf_exempt``) use no session: there is nothing to forge. Every other POST is checked.
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return
        if request.headers.get("Authorization", "").startswith("Bearer "):
            return
        if "/api/" in request.path and app.config["SESSION_COOKIE_NAME"] not in request.cookies:
            return  # no session to ride on: the API's own auth check answers (401)
        view = app.view_functions.get(request.endpoint)
        if getattr(view, "csrf_exempt", False):
            return
        csrf.protect()

    @app.get("/")
    def home():
        return redirect(url_for(definition.home_endpoint))

    @app.get("/healthz")
    def healthz():
        """Liveness: the process answers (no I/O)."""
        return {"service": service.name, "status": "ok"}

    @app.get("/readyz")
    def readyz():
        """Readiness: the database answers ``SELECT 1`` and the broker accepts a connection."""
        return readiness_response(service)

    @app.get("/metrics")
    def metrics_endpoint():
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    @app.context_processor
    def _globals():
        return {"service_name": service.name, "service_title": definition.title,
                "DISTRICTS": DISTRICTS, "CATEGORIES": CATEGORIES, "DEPARTMENTS": DEPARTMENTS,
                "CHANNELS": CHANNELS, "current_user": current_user}

    @app.template_filter("localtime")
    def _localtime(value):
        if value is None:
            return ""
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")

    @app.errorhandler(CSRFError)
    def _csrf_error(err):
        return _error(400, "页面已过期或请求来源无效，请刷新后重试", "csrf_failed")

    @app.errorhandler(HTTPException)
    def _http_error(err):
        messages = {400: "请求无效", 401: "请先登录", 403: "您没有权限访问此页面",
                    404: "未找到该页面或记录", 405: "不支持的请求方式", 413: "上传内容过大",
                    429: "请求过于频繁，请稍后再试"}
        return _error(err.code, messages.get(err.code, err.description), err.name.lower().replace(" ", "_"))

    @app.errorhandler(Exception)
    def _unexpected(err):
        log.exception("unhandled error on %s", request.path)
        return _error(500, "系统繁忙，请稍后再试", "internal_error")

    return app


def _error(status, message, code):
    if "/api/" in request.path or request.accept_mimetypes.best == "application/json":
        return jsonify({"error": code, "message": message}), status
    return render_template("error.html", status=status, message=message), status


def prefixed(apps: dict, root_app=None):
    """Mount each service's WSGI app under ``/<name>``."""
    if isinstance(root_app, Flask):
        security.init_app(root_app)  # the landing page gets the same headers
    return DispatcherMiddleware(root_app or NotFound(), {f"/{name}": app for name, app in apps.items()})
