"""The e-mail notifier against a real SMTP server (aiosmtpd, started here on a free port):
delivered after commit, retried while the server is down, nothing lost."""
import email
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from services.common.config import SmtpSettings
from services.intake import notify
from services.intake.models import Notification
from services.intake.requests import submit_request
from tests.support.cluster import free_port


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content,
                                                                         policy=email.policy.default)))
        return "250 OK"


class MailServer:
    """A real SMTP server on a fixed free port that can go down and come back."""

    def __init__(self):
        self.port, self.inbox, self.controller = free_port(), Inbox(), None

    def start(self):
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp():
    server = MailServer()
    server.start()
    yield server
    server.stop()


def test_e_mail_goes_out_after_commit_and_is_retried_while_the_server_is_down(build_service, smtp):
    controller, inbox, port = smtp, smtp.inbox, smtp.port
    intake = build_service("intake", smtp=SmtpSettings(host="127.0.0.1", port=port, timeout=5))
    case = submit_request(intake, {"district": "210902", "name": "张三", "phone": "13800001234",
                                   "description": "楼上漏水，天花板一直滴水", "email": "zhang@example.com"})
    controller.stop()  # the mail server is down: the SMS goes, the e-mail waits
    assert notify.deliver_pending(intake) == 1
    with intake.uow() as uow:
        mail = uow.session.scalars(select(Notification).where(Notification.channel == "email")).one()
    assert mail.sent_at is None and mail.attempts == 1 and mail.last_error
    controller.start()
    intake.clock.advance(timedelta(seconds=31))
    assert notify.deliver_pending(intake) == 1
    [(recipients, message)] = inbox.messages
    assert recipients == ["zhang@example.com"]
    assert message["Subject"] == f"【阜政通】诉求{case.case_no}：诉求已受理"
    assert case.tracking_code in message.get_content() and "阜政通" in message["From"]
    with intake.uow() as uow:
        mail = uow.session.get(Notification, mail.id)
    assert mail.sent_at is not None and mail.provider_ref == message["Message-ID"]
    assert notify.deliver_pending(intake) == 0  # sent once, not again
    assert len(inbox.messages) == 1
