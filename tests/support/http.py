"""A tiny stdlib HTTP client for e2e tests and benchmarks (no ``requests`` dependency).

``HttpClient`` keeps one keep-alive ``http.client`` connection per (thread, host, port), so
benchmark threads do not pay a TCP handshake per call; it never follows redirects (tests
assert them) and keeps the cookies the server sets (staff login sessions). ``call`` returns a
``Response`` for every status, 4xx/5xx included. ``wait_for`` polls until a predicate returns
something truthy, with a deadline and the last value seen in the timeout message.
"""
from __future__ import annotations

import http.client
import json as jsonlib
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.cookies import SimpleCookie


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def json(self):
        return jsonlib.loads(self.body) if self.body else None

    @property
    def location(self) -> str:
        return self.headers.get("location", "")

    def __repr__(self):
        return f"<Response {self.status} {self.text[:300]!r}>"


@dataclass
class HttpClient:
    """Keep-alive client; ``token`` adds ``Authorization: Bearer``; cookies persist per client."""

    token: str | None = None
    timeout: float = 30.0
    cookies: dict = field(default_factory=dict)

    def __post_init__(self):
        self._local = threading.local()
        self._cookie_lock = threading.Lock()

    def _connection(self, host, port, fresh=False):
        pool = self._local.__dict__.setdefault("pool", {})
        if fresh and (host, port) in pool:
            pool.pop((host, port)).close()
        if (host, port) not in pool:
            pool[(host, port)] = http.client.HTTPConnection(host, port, timeout=self.timeout)
        return pool[(host, port)]

    def close(self):
        for conn in getattr(self._local, "pool", {}).values():
            conn.close()
        self._local.pool = {}

    def call(self, method: str, url: str, *, json=None, form: dict | None = None,
             data: bytes | None = None, token: str | None = None,
             headers: dict | None = None) -> Response:
        parts = urllib.parse.urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = {"Accept": "application/json" if "/api/" in parts.path else "text/html"}
        body = data
        if json is not None:
            body = jsonlib.dumps(json, ensure_ascii=False).encode()
            sent["Content-Type"] = "application/json; charset=utf-8"
        elif form is not None:
            body = urllib.parse.urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        bearer = token if token is not None else self.token
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"
        with self._cookie_lock:
            if self.cookies:
                sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        sent.update(headers or {})
        for attempt in (0, 1):
            conn = self._connection(parts.hostname, parts.port or 80, fresh=attempt > 0)
            reused = getattr(conn, "fzt_used", False)
            try:
                conn.request(method, path, body=body, headers=sent)
                raw = conn.getresponse()
                payload = raw.read()
                conn.fzt_used = True
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                conn.close()
                # Only a kept-alive connection the server closed while idle is retried (once),
                # on a new connection; a failure on a fresh connection is the answer.
                if attempt or not reused:
                    raise
        for header in raw.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(header)
            with self._cookie_lock:
                for key, morsel in jar.items():
                    if morsel.value == "" or (morsel["expires"] and "1970" in morsel["expires"]):
                        self.cookies.pop(key, None)
                    else:
                        self.cookies[key] = morsel.value
        if raw.getheader("Connection", "").lower() == "close":
            conn.close()
        return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, payload)

    def get(self, url, **kwargs) -> Response:
        return self.call("GET", url, **kwargs)

    def post(self, url, **kwargs) -> Response:
        return self.call("POST", url, **kwargs)


def url_with(url: str, **params) -> str:
    """``url`` plus query parameters (None values left out)."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    return f"{url}{'&' if '?' in url else '?'}{query}" if query else url


_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf_token(html: str) -> str:
    match = _CSRF.search(html)
    if not match:
        raise AssertionError("no csrf_token field in the page")
    return match.group(1) or match.group(2)


def login(client: HttpClient, login_url: str, username: str, password: str) -> Response:
    """Log ``client`` in through the staff login form (GET for the CSRF token, then POST)."""
    page = client.get(login_url)
    assert page.status == 200, page
    return client.post(login_url, form={"username": username, "password": password,
                                        "csrf_token": csrf_token(page.text)})


def wait_for(fetch, until=bool, timeout: float = 30.0, what: str = "condition",
             interval: float = 0.05):
    """Call ``fetch`` until ``until(value)`` holds and return that value.

    Raises TimeoutError after ``timeout`` seconds, quoting the last value fetched.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last value: {value!r}")
        time.sleep(interval)
