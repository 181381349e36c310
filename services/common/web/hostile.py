"""Hostile input refused before any view runs (docs/security.md, "Hostile input").

Found by fuzzing the JSON APIs against PostgreSQL (tests/unit/test_fuzz.py): a NUL character
or an unpaired surrogate in any field, or JSON nested deeper than Python's recursion limit,
made the request fail with 500 inside the transaction. Here, for every service:

* the app's JSON provider turns a too-deep document and unstorable text into a parse error,
  so ``request.get_json(silent=True)`` returns None and the API answers 400 ``invalid_json``;
* a ``before_request`` hook answers 400 to a NUL in the query string, the form fields or the
  URL (e.g. ``/requests/%00``) — werkzeug already replaces invalid UTF-8 there, so NUL is the
  one character that would reach the database — and to a multipart part without a name.
"""
from __future__ import annotations

from flask import abort, request
from flask.json.provider import DefaultJSONProvider

from ..safetext import unstorable


class StrictJSONProvider(DefaultJSONProvider):
    def loads(self, s, **kwargs):
        try:
            value = super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
        if unstorable(value):
            raise ValueError("JSON text holds a NUL character or an unpaired surrogate")
        return value


def _refuse_nul():
    values = [*(request.view_args or {}).values()]
    sources = [request.args]
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        sources += [request.form, request.files]
    for source in sources:
        for key, items in source.lists():
            if key is None:  # a multipart part without a name (found by fuzzing: 500 in jsonify)
                abort(400)
            values += [key, *(item for item in items if isinstance(item, str))]
    if any("\x00" in v for v in values if isinstance(v, str)):
        abort(400)


def init_app(app) -> None:
    ensure_ascii = app.json.ensure_ascii
    app.json = StrictJSONProvider(app)
    app.json.ensure_ascii = ensure_ascii
    app.before_request(_refuse_nul)
