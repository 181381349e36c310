"""Personal data: the masking rules of the platform (docs/security.md, "Personal data").

* On staff pages the citizen's phone and name show masked until a member of staff reveals
  them on purpose (a POST that writes a ``pii.reveal`` audit entry). In templates:
  ``{{ data.phone|mask_phone }}``, ``{{ data.name|mask_name }}``, ``{{ text|mask_personal }}``.
* In free text (public pages, Open311, typical cases, anonymised archived cases):
  ``mask_personal`` hides phone, landline and ID-card numbers, e-mail addresses and the
  requester's own name and phone.
"""
from __future__ import annotations

import re

# Numbers that identify a person (mobile, also written +86 138-0000-1234 or 138 0000 1234;
# landline; ID card) and e-mail addresses: masked in every public text (a citizen often writes
# "请回电138…" into the description, a department its reply "已联系张女士138…").
PERSONAL_NUMBER = re.compile(r"(?<![\dA-Za-z])(?:(?:\+?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}|0\d{2,3}-?\d{7,8}"
                             r"|\d{17}[\dXx])(?![\dA-Za-z])")
# ASCII only: with \w, "邮箱zsf@…" would take the Chinese word before the address with it.
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
# Where someone lives, below the street: building, unit and room ("5号楼2单元301室", "3单元502").
# A road and house number ("中华路18号") stays: it names a place, and the problem is often there.
DOOR = re.compile(r"\d+\s*(?:号楼|栋|幢|单元)(?:[\d\s\-]|号楼|栋|幢|单元|层|楼|室|号)*|\d+\s*室")
MASK = "＊＊＊"


def mask_personal(text, name: str | None = None, phone: str | None = None):
    """``text`` without the requester's ``name`` and ``phone``, nor any phone, ID, e-mail or
    building/unit/room number.

    A one-character name is left alone (it would mask ordinary words)."""
    if not text:
        return text
    if phone:
        text = text.replace(phone, MASK)
    name = (name or "").strip()
    if len(name) >= 2:
        text = text.replace(name, MASK)
    return DOOR.sub(MASK, EMAIL.sub(MASK, PERSONAL_NUMBER.sub(MASK, text)))


def mask_phone(value) -> str:
    """138****1234: a number of 8 or more characters keeps its first 3 and last 4; a shorter
    one only its last 2."""
    text = str(value or "").strip()
    if len(text) >= 8:
        return text[:3] + "*" * (len(text) - 7) + text[-4:]
    if len(text) > 2:
        return "*" * (len(text) - 2) + text[-2:]
    return "*" * len(text)


def mask_name(value) -> str:
    """张* / 张** / 欧***: the first character (the family name, mostly) and a star for each
    of the others; a one-character name is all star."""
    text = str(value or "").strip()
    if len(text) <= 1:
        return "*" * len(text)
    return text[0] + "*" * (len(text) - 1)


def init_app(app) -> None:
    app.add_template_filter(mask_phone)
    app.add_template_filter(mask_name)
    app.add_template_filter(mask_personal)
