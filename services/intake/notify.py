"""Telling citizens how their case goes: accepted, replied (with the request to rate),
reopened, closed (docs/satisfaction.md, "Notifications").

*When* a citizen is told is the diagram's business: bpmn/intake.bpmn calls the service task
``notify_citizen`` with a ``kind``. The task writes one ``Notification`` row per channel in
the step's own transaction (an outbox: nothing is sent before the step commits, and nothing
committed is lost). ``deliver_pending`` — a periodic job of intake's worker — hands each due
row to its channel's adapter and marks it sent; a failure is recorded on the row and retried
after a growing pause, forever (staff see the attempts and the last error on the case).

Channels: ``sms`` (the SMS / WeChat template-message role) always, to the citizen's phone;
``email`` when the citizen gave an address *and* FZT_SMTP_HOST is set. Delivery is at least
once: a crash between sending and the commit sends that one message again.
"""
from __future__ import annotations

import logging
import smtplib
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import select

from services.common.web.privacy import mask_phone

from .models import CitizenRequest, Notification

log = logging.getLogger(__name__)

SMS_DETAIL_CHARS = 60  # a reply quoted in a text message is cut here; the e-mail has it all
MAX_PAUSE = timedelta(hours=1)
FIRST_PAUSE = timedelta(seconds=30)

# kind -> (subject, text); {detail} is the reply, {days} the working days left to rate.
TEXTS = {
    "accepted": ("诉求已受理",
                 "您的诉求已受理，诉求编号{case_no}，查询码{tracking_code}。"
                 "请妥善保存，可凭诉求编号和查询码随时查询办理进度。"),
    "replied": ("诉求已有办理结果",
                "您的诉求{case_no}已有办理结果：{detail}。请在{days}个工作日内凭诉求编号和查询码"
                "对办理结果作出评价（满意/基本满意/不满意），逾期将由回访员电话回访。"),
    "reopened": ("诉求将重新办理",
                 "已收到您对诉求{case_no}的评价，该诉求已交承办部门重新办理，办理结果将再次告知您。"),
    "closed": ("诉求已办结", "您的诉求{case_no}已办结，感谢您的评价和监督。"),
}
KIND_NAMES = {"accepted": "已受理", "replied": "办理结果", "reopened": "重新办理", "closed": "已办结"}
CHANNEL_NAMES = {"sms": "短信", "email": "电子邮件"}
SIGNATURE = "【阜政通】"


def _text(kind, request, detail="", days=0, limit=None) -> str:
    if limit is not None and len(detail) > limit:
        detail = detail[:limit] + "…"
    return SIGNATURE + TEXTS[kind][1].format(case_no=request.case_no, tracking_code=request.tracking_code,
                                             detail=detail, days=days)


def queue(uow, request: CitizenRequest, kind: str, now, detail: str = "", days: int = 0) -> list[str]:
    """Add the notifications of ``kind`` for ``request`` to ``uow`` (sent after it commits);
    returns their channels."""
    if kind not in TEXTS:
        raise ValueError(f"unknown notification kind {kind!r}")
    subject = f"{SIGNATURE}诉求{request.case_no}：{TEXTS[kind][0]}"
    recipients = {"sms": (request.phone, SMS_DETAIL_CHARS)}
    if request.email:
        recipients["email"] = (request.email, None)
    for channel, (recipient, detail_chars) in recipients.items():
        uow.insert(Notification, case_no=request.case_no, kind=kind, channel=channel, recipient=recipient,
                   subject=subject, body=_text(kind, request, detail, days, detail_chars),
                   created_at=now, attempts=0, next_attempt_at=now)
    return list(recipients)


def _request_of(session, case_no: str):
    """The case's request, also one added in this transaction and not flushed yet (the
    diagram's start runs in the submission's transaction). No autoflush: flushing here would
    insert the new instance before its first state exists, then update it with the state."""
    for added in session.new:
        if isinstance(added, CitizenRequest) and added.case_no == case_no:
            return added
    with session.no_autoflush:
        return session.get(CitizenRequest, case_no)


def notify_citizen_task(ctx, kind: str, detail="", days=0) -> dict:
    """Service task ``notify_citizen`` (bpmn/intake.bpmn)."""
    request = _request_of(ctx.uow.session, ctx.case_no)
    if request is None:
        raise LookupError(f"no citizen request {ctx.case_no}")
    channels = queue(ctx.uow, request, kind, ctx.clock.now(), str(detail or ""), int(days or 0))
    return {"kind": kind, "channels": channels}


# -- adapters: send(notification) -> the provider's reference; raise on failure -------------

class SmsRecorder:
    """The SMS / WeChat-style channel. No real gateway is reachable from this platform, so the
    message is "sent" by recording it: the notification row (shown to staff on the case) is
    the record, and the log line is what a gateway's request would carry."""

    channel = "sms"

    def send(self, note: Notification) -> str:
        log.info("sms to %s (case %s): %s", mask_phone(note.recipient), note.case_no, note.body,
                 extra={"case_no": note.case_no})
        return f"sms-{note.id}"


class SmtpMailer:
    """E-mail over SMTP (FZT_SMTP_*: services/common/config.py)."""

    channel = "email"

    def __init__(self, smtp):
        self.smtp = smtp

    def send(self, note: Notification) -> str:
        message = EmailMessage()
        message["From"] = self.smtp.sender
        message["To"] = note.recipient
        message["Subject"] = note.subject
        message["Message-ID"] = make_msgid(domain=self.smtp.sender.rpartition("@")[2].strip("> ") or None)
        message.set_content(note.body)
        with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.smtp.timeout) as client:
            if self.smtp.starttls:
                client.starttls()
            if self.smtp.user:
                client.login(self.smtp.user, self.smtp.password)
            client.send_message(message)
        return message["Message-ID"]


def adapters_for(settings) -> dict:
    adapters = {"sms": SmsRecorder()}
    if settings.smtp.enabled:
        adapters["email"] = SmtpMailer(settings.smtp)
    return adapters


def pause_after(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min … at most an hour between attempts."""
    return min(FIRST_PAUSE * 2 ** max(attempts - 1, 0), MAX_PAUSE)


SEND_BATCH = 10  # due rows taken per transaction


def deliver_pending(service, adapters: dict | None = None, limit: int = 50) -> int:
    """Send due notifications, up to ``SEND_BATCH`` per transaction (rows locked, SKIP LOCKED:
    several workers share the work); returns how many were sent. Rows of a channel without an
    adapter (e-mail with no SMTP server configured) wait until there is one. One row per
    transaction cost more than the rest of a submission's worker time; a crash before the
    commit sends the batch's earlier messages again (at least once, as before)."""
    adapters = adapters_for(service.settings) if adapters is None else adapters
    sent = taken = 0
    while taken < limit:
        wanted = min(SEND_BATCH, limit - taken)
        with service.uow() as uow:
            now = service.clock.now()
            notes = uow.session.scalars(
                select(Notification).where(Notification.sent_at.is_(None), Notification.next_attempt_at <= now,
                                           Notification.channel.in_(list(adapters)))
                .order_by(Notification.next_attempt_at, Notification.id).limit(wanted)
                .with_for_update(skip_locked=True)).all()
            sent += sum(_send(note, adapters[note.channel], now) for note in notes)
            uow.commit()
        taken += len(notes)
        if len(notes) < wanted:
            break
    return sent


def _send(note: Notification, adapter, now) -> bool:
    """Send one row; a failure is recorded on it and retried later (any exception)."""
    note.attempts += 1
    try:
        note.provider_ref = str(adapter.send(note))[:100]
        note.sent_at, note.last_error = now, None
        return True
    except Exception as err:  # any failure: keep the row, try again later
        note.last_error = f"{type(err).__name__}: {err}"[:1000]
        note.next_attempt_at = now + pause_after(note.attempts)
        log.warning("notification %s of case %s failed (attempt %s): %s", note.id, note.case_no,
                    note.attempts, note.last_error, extra={"case_no": note.case_no})
        return False


def send_notifications(service) -> int:
    """intake's periodic job (services/common/worker.py)."""
    return deliver_pending(service)


def for_case(session, case_no: str) -> list[Notification]:
    return session.scalars(select(Notification).where(Notification.case_no == case_no)
                           .order_by(Notification.created_at, Notification.id)).all()


def mask_recipient(note: Notification) -> str:
    if note.channel == "email":
        user, _, domain = note.recipient.partition("@")
        return f"{user[:1]}***@{domain}"
    return mask_phone(note.recipient)


def staff_body(note: Notification, request: CitizenRequest | None) -> str:
    """The text as staff see it: the tracking code (the citizen's key to the case) hidden."""
    if request is not None and request.tracking_code:
        return note.body.replace(request.tracking_code, "＊" * len(request.tracking_code))
    return note.body
