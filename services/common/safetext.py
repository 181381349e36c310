"""Text the databases cannot store: NUL characters (PostgreSQL refuses them in text and JSON)
and unpaired UTF-16 surrogates (``"\\ud800"`` in JSON decodes to a Python string that cannot be
encoded as UTF-8). Input carrying them is refused at the edge — HTTP (services/common/web/hostile.py)
and the bus (services/common/bus/messages.py) — instead of failing deep inside a transaction.
"""
from __future__ import annotations

import re

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(value) -> bool:
    """Whether any string in ``value`` (nested dicts and lists too, keys included) holds a NUL
    or a lone surrogate. Iterative, so a deeply nested document cannot exhaust the stack."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if UNSTORABLE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False
