"""Bus envelopes and bodies are validated on both ends."""
from datetime import datetime, timezone

import pytest

from services.common.bus.messages import InvalidMessage, make_envelope, parse_envelope

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
BODY = {"case_no": "210902-20261125-0001", "district": "210902", "name": "张三",
        "phone": "13800001234", "description": "楼上漏水", "category": "", "channel": "web",
        "location": "", "submitted_at": NOW.isoformat()}


def test_valid_envelope_round_trips():
    envelope = make_envelope("intake.case_submitted", BODY, "intake", NOW)
    loaded = parse_envelope(envelope)
    assert loaded["type"] == "intake.case_submitted"
    assert loaded["case_no"] == BODY["case_no"]
    assert loaded["body"]["description"] == "楼上漏水"


def test_sender_cannot_build_an_invalid_body():
    with pytest.raises(InvalidMessage, match="district"):
        make_envelope("intake.case_submitted", {**BODY, "district": "1"}, "intake", NOW)


@pytest.mark.parametrize("mutate, reason", [
    (lambda e: e.update(type="intake.unknown_event"), "type"),
    (lambda e: e["body"].pop("phone"), "phone"),
    (lambda e: e.update(case_no="other"), "differs"),
    (lambda e: e.update(version=99), "version"),
    (lambda e: e.update(extra="x"), "extra"),
    (lambda e: e.update(id="not-a-uuid"), "id"),
    (lambda e: e.update(occurred_at="2026-11-25T09:00:00"), "occurred_at"),  # no timezone
])
def test_receiver_refuses_invalid_envelopes(mutate, reason):
    envelope = make_envelope("intake.case_submitted", dict(BODY), "intake", NOW)
    envelope["body"] = dict(envelope["body"])
    mutate(envelope)
    with pytest.raises(InvalidMessage, match=reason):
        parse_envelope(envelope)


@pytest.mark.parametrize("junk", [None, [], "text", 42])
def test_non_objects_are_refused(junk):
    with pytest.raises(InvalidMessage):
        parse_envelope(junk)
