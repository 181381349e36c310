"""Security headers on every response of the four apps (and the landing page).

``init_app(app)`` is called by ``create_app``. What each header is for, and why the policy
looks as it does, is in docs/security.md. A view that needs something else (a different
CSP for one page, say) sets the header itself: headers already on the response are kept,
except ``Cache-Control`` on non-static responses, which is always ``no-store`` — staff pages
and API answers carry personal data and must not stay in a browser's or proxy's cache —
unless the view set a ``private`` one (served uploads, which revalidate every time).
"""
from __future__ import annotations

from flask import Flask, request

CSP_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "object-src": "'none'",
    "frame-ancestors": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
}
CONTENT_SECURITY_POLICY = "; ".join(f"{name} {value}" for name, value in CSP_DIRECTIVES.items())

# Nothing on the platform uses these browser features; deny them to every frame.
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": PERMISSIONS_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000"  # production over HTTPS only (see docs/security.md)


def init_app(app: Flask, production: bool = False) -> None:
    """Add the headers to every response of ``app`` (idempotent)."""
    if app.extensions.get("fzt_security_headers"):
        return
    app.extensions["fzt_security_headers"] = True

    @app.after_request
    def _security_headers(response):
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if production and request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        endpoint = request.endpoint or ""
        # A served upload sets "private, no-cache" itself (services/common/uploads.py): the
        # browser may keep it but must ask again, so the scope check runs on every view.
        private = response.headers.get("Cache-Control", "").startswith("private")
        if endpoint != "static" and not endpoint.endswith(".static") and not private:
            response.headers["Cache-Control"] = "no-store"
        return response
