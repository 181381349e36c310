"""Taking a citizen request: validation rules, case numbers, tracking codes, the submit command.

Shared by the mobile form, the JSON API and (later) the other channels, so every channel
gets the same checks and the same case record.
"""
from __future__ import annotations

import re
import secrets
from datetime import timedelta

from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from services.common.models import TimelineEntry
from services.common.reference import CATEGORIES, CHANNELS, district_code

from .models import CaseSequence, CitizenRequest, RequestPhoto
from .volume_counts import add_request

PHONE = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$")
TRACKING_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
CHINA_OFFSET_HOURS = 8


def _text(required: str | None = None, **kwargs):
    """A string field whose every error reads in Chinese (citizens see them)."""
    messages = {"invalid": "请填写文字", "null": required or "此项不能为空"}
    if required:
        messages["required"] = required
    return fields.String(required=bool(required), error_messages=messages, **kwargs)


class RequestSchema(Schema):
    """A new citizen request, from any channel. Error messages are shown to citizens."""

    error_messages = {"unknown": "不支持的字段"}

    district = _text("请选择所在县区")
    name = _text("请填写姓名", validate=validate.Length(min=1, max=50, error="姓名需为1至50个字"))
    phone = _text("请填写联系电话")
    description = _text("请描述您的诉求", validate=validate.Length(min=5, max=2000, error="诉求内容需为5至2000个字"))
    category = _text(load_default="", validate=validate.OneOf(["", *CATEGORIES], error="未知的诉求类别"))
    channel = _text(load_default="web", validate=validate.OneOf(list(CHANNELS), error="未知的渠道"))
    location = _text(load_default="", validate=validate.Length(max=200, error="地址不超过200个字"))
    # Optional: progress is also sent by e-mail (services/intake/notify.py).
    email = fields.Email(load_default=None, error_messages={"invalid": "请填写正确的电子邮箱，或留空"},
                         validate=validate.Length(max=254, error="电子邮箱不超过254个字符"))

    @pre_load
    def _strip(self, data, **_):
        if not isinstance(data, dict):
            raise ValidationError("请求内容必须是 JSON 对象", "_schema")
        return {k: v.strip() if isinstance(v, str) else v for k, v in data.items()}

    @validates("district")
    def _district(self, value, **_):
        if district_code(value) is None:
            raise ValidationError("未知的县区，请从列表中选择")

    @validates("phone")
    def _phone(self, value, **_):
        if not PHONE.match(value):
            raise ValidationError("请填写正确的手机号或座机号码")


def next_case_no(session, district: str, now) -> str:
    """``<district>-<yyyymmdd>-<nnnn>``, the day in China time; safe under concurrency."""
    day = (now + timedelta(hours=CHINA_OFFSET_HOURS)).strftime("%Y%m%d")
    for _ in range(3):
        last = session.execute(
            update(CaseSequence).where(CaseSequence.district == district, CaseSequence.day == day)
            .values(last=CaseSequence.last + 1).returning(CaseSequence.last)
        ).scalar()
        if last is not None:
            return f"{district}-{day}-{last:04d}"
        try:
            with session.begin_nested():
                session.add(CaseSequence(district=district, day=day, last=0))
        except IntegrityError:
            pass  # another request created today's row first; increment it
    raise RuntimeError("could not allocate a case number")


def new_tracking_code() -> str:
    return "".join(secrets.choice(TRACKING_ALPHABET) for _ in range(8))


def submit_request(service, data: dict, uow=None, photos=(), **columns) -> CitizenRequest:
    """Store a validated request and start intake.bpmn for it, in one transaction.

    ``uow``: an open unit of work to join (the caller commits, e.g. with its own rows);
    ``photos``: references to photos already checked and in the blob store
    (services/common/uploads.py); they travel to dispatch with intake.case_submitted;
    ``columns``: extra CitizenRequest columns a channel knows (latitude, longitude, media_url).
    """
    if uow is None:
        with service.uow() as own:
            request = submit_request(service, data, own, photos, **columns)
            own.commit()
        return request
    district = district_code(data["district"])
    now = service.clock.now()
    case_no = next_case_no(uow.session, district, now)
    request = CitizenRequest(
        case_no=case_no, tracking_code=new_tracking_code(), district=district,
        name=data["name"], phone=data["phone"], description=data["description"],
        category=data.get("category", ""), channel=data.get("channel", "web"),
        location=data.get("location", ""), email=data.get("email") or None, status="submitted",
        created_at=now, **columns)
    add_request(uow, request)  # counted for 受理量统计 in this transaction
    photos = [dict(ref) for ref in photos]
    for position, ref in enumerate(photos):
        uow.add(RequestPhoto(case_no=case_no, position=position, **ref))
    service.runtime.start(uow, case_no, {
        "case_no": case_no, "district": district, "name": request.name, "phone": request.phone,
        "description": request.description, "category": request.category,
        "channel": request.channel, "location": request.location,
        "submitted_at": now.isoformat(),
        "latitude": columns.get("latitude"), "longitude": columns.get("longitude"),
        "photos": photos,
    })
    return request


def find_request(service, case_no: str, tracking_code: str):
    """The request if the tracking code matches (constant-time compare), else None."""
    with service.uow() as uow:
        request = uow.session.get(CitizenRequest, (case_no or "").strip())
    if request is None or not secrets.compare_digest(request.tracking_code,
                                                      (tracking_code or "").strip().upper()):
        return None
    return request


def request_photos(service, case_no: str) -> list:
    with service.uow() as uow:
        return uow.session.scalars(select(RequestPhoto).where(RequestPhoto.case_no == case_no)
                                   .order_by(RequestPhoto.position)).all()


def public_timeline(service, case_no: str):
    with service.uow() as uow:
        return uow.session.scalars(select(TimelineEntry).where(
            TimelineEntry.case_no == case_no, TimelineEntry.public.is_(True))
            .order_by(TimelineEntry.at, TimelineEntry.id)).all()
