"""API bearer tokens (``fzt token``): signed with the shared secret, naming a user, the
account's session version when the token was made, and the issue time.

A token stops working when it is older than ``max_age`` (``FZT_TOKEN_MAX_AGE_DAYS``), when
the account's ``session_version`` moves on (logout everywhere, a password change or reset, an
admin lock — docs/security.md) or when the account is disabled. Checked in
``auth._load_from_bearer``; nothing is stored, so a token cannot be revoked on its own, only
together with the account's sessions.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

SALT = "fzt-api-token"
_wall_clock = time.time  # like sessions: real time, so `fzt clock advance` does not expire tokens


class _Signer(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(_wall_clock())


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT, signer=_Signer)


def make_token(secret_key: str, username: str, session_version: int = 0) -> str:
    return _serializer(secret_key).dumps({"u": username, "v": session_version})


def expires_at(max_age_seconds: int) -> datetime:
    """When a token made now stops working."""
    return datetime.fromtimestamp(int(_wall_clock()) + max_age_seconds, tz=timezone.utc)


def read_token(secret_key: str, token: str, max_age_seconds: int) -> tuple[str, int] | None:
    """(username, session version) of a genuine token younger than ``max_age_seconds``, else None."""
    try:
        data = _serializer(secret_key).loads(token, max_age=max_age_seconds)
    except BadSignature:  # also SignatureExpired, and tokens of the old format (no timestamp)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("u"), str) or not isinstance(data.get("v"), int):
        return None
    return data["u"], data["v"]
