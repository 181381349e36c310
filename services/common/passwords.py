"""Password rules for staff accounts (docs/security.md, "Passwords").

Length over composition rules (NIST SP 800-63B): at least ``MIN_LENGTH`` characters, not the
username (nor containing it), not one character repeated, and not on a short deny list of the
passwords tried first by anyone guessing (common ones, the platform's and the city's names).
The rules apply whenever a person chooses a password: the admin pages, the own-password page
and ``fzt user add``; the demo accounts (never in production) are exempt.
"""
from __future__ import annotations

MIN_LENGTH = 10
MAX_LENGTH = 128

DENY_LIST = frozenset({
    "password", "password1", "password123", "passw0rd", "p@ssw0rd", "p@ssword", "admin",
    "admin123", "admin1234", "administrator", "root", "qwerty", "qwertyuiop", "qwerty123",
    "1q2w3e4r", "1q2w3e4r5t", "1qaz2wsx", "1qaz2wsx3edc", "zaq12wsx", "abc123", "abcd1234",
    "abc123456", "a123456789", "iloveyou", "woaini1314", "5201314", "letmein", "welcome",
    "welcome1", "changeme", "11111111", "00000000", "12345678", "123456789", "1234567890",
    "0123456789", "987654321", "9876543210", "88888888", "66666666", "147258369", "123123123",
    "demo12345", "fuzhengtong", "fuxin", "fuxin12345", "fxzft", "12345", "zhengfu", "gov12345",
})


def password_problem(password: str, username: str = "") -> str | None:
    """Why ``password`` may not be used by ``username`` (Chinese, shown next to the field), or None."""
    if len(password) < MIN_LENGTH:
        return f"密码至少需要{MIN_LENGTH}个字符"
    if len(password) > MAX_LENGTH:
        return f"密码不能超过{MAX_LENGTH}个字符"
    lowered = password.lower()
    if username and username.lower() in lowered:
        return "密码不能包含用户名"
    if len(set(password)) == 1:
        return "密码不能由同一个字符重复组成"
    if lowered in DENY_LIST or lowered.rstrip("0123456789!@#.") in DENY_LIST:
        return "这个密码太常见，容易被猜到，请换一个"
    return None
