"""Versioned message bodies: a consumer applies its current version and the one before
(upcast), and refuses a version it does not know with a reason that says so."""
from datetime import datetime, timezone

import pytest

from services.common.bus import messages
from services.common.bus.messages import (BODY_SCHEMAS, BODY_VERSIONS, UPCASTERS, InvalidMessage,
                                          body_version, case_submitted_v1_to_v2, make_envelope,
                                          parse_envelope)

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
V1_BODY = {"case_no": "210902-20261125-0001", "district": "210902", "name": "张三",
           "phone": "13800001234", "description": "路灯不亮", "category": "", "channel": "open311",
           "location": "经纬度 41.990000,121.650000", "submitted_at": NOW.isoformat()}


def v1_envelope(body=V1_BODY):
    """What an intake of the first release put on the bus (version 1, no point fields)."""
    return {"id": "7a0c6d2e-3c0e-4c1e-9d53-8a4b8d7f0001", "type": "intake.case_submitted",
            "version": 1, "occurred_at": NOW.isoformat(), "case_no": body["case_no"],
            "source": "intake", "body": dict(body)}


def test_every_bumped_type_has_an_upcaster_from_the_version_before():
    for message_type, version in BODY_VERSIONS.items():
        assert message_type in BODY_SCHEMAS, message_type
        assert version >= 2, message_type  # 1 is the default: list only bumped types
        assert (message_type, version - 1) in UPCASTERS, f"{message_type} v{version} has no upcaster"
    for message_type, version in UPCASTERS:
        assert version < body_version(message_type), (message_type, version)


def test_producers_stamp_the_current_version():
    envelope = make_envelope("intake.case_submitted", {**V1_BODY, "latitude": None, "longitude": None},
                             "intake", NOW)
    assert envelope["version"] == body_version("intake.case_submitted") == 2
    assert make_envelope("dispatch.case_rejected", {"case_no": "x", "reason": "不属实"},
                         "dispatch", NOW)["version"] == 1


def test_a_previous_version_is_upcast_and_accepted():
    loaded = parse_envelope(v1_envelope())
    assert loaded["version"] == 2
    assert loaded["body"]["latitude"] == 41.99 and loaded["body"]["longitude"] == 121.65
    assert loaded["body"]["location"] == "经纬度 41.990000,121.650000"  # kept as it was


def test_a_v1_body_without_a_point_label_gets_no_point():
    loaded = parse_envelope(v1_envelope({**V1_BODY, "location": "海州区解放路12号"}))
    assert loaded["body"]["latitude"] is None and loaded["body"]["longitude"] is None
    assert case_submitted_v1_to_v2({"case_no": "x"})["latitude"] is None


def test_the_upcast_body_is_validated_like_a_current_one():
    with pytest.raises(InvalidMessage, match="latitude"):
        parse_envelope(v1_envelope({**V1_BODY, "location": "经纬度 95.000000,121.650000"}))
    with pytest.raises(InvalidMessage, match="phone"):
        parse_envelope(v1_envelope({k: v for k, v in V1_BODY.items() if k != "phone"}))


@pytest.mark.parametrize("version, reason", [
    (3, "unknown version: intake.case_submitted version 3 is newer than this consumer knows (2)"),
    (0, "version"),
    ("2", "version"),  # a number, not a string
])
def test_unknown_versions_are_refused_with_the_reason(version, reason):
    envelope = v1_envelope()
    envelope["version"] = version
    with pytest.raises(InvalidMessage, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_envelope(envelope)


def test_a_version_older_than_the_upcasters_reach_is_refused(monkeypatch):
    monkeypatch.setitem(BODY_VERSIONS, "intake.case_submitted", 3)
    monkeypatch.setitem(UPCASTERS, ("intake.case_submitted", 2), lambda body: body)
    monkeypatch.delitem(UPCASTERS, ("intake.case_submitted", 1))
    with pytest.raises(InvalidMessage, match="version 1 is too old"):
        parse_envelope(v1_envelope())


def test_an_upcaster_that_fails_on_a_malformed_body_refuses_the_message(monkeypatch):
    def broken(body):
        raise KeyError("location")
    monkeypatch.setitem(messages.UPCASTERS, ("intake.case_submitted", 1), broken)
    with pytest.raises(InvalidMessage, match="cannot upcast intake.case_submitted version 1"):
        parse_envelope(v1_envelope())


def test_intake_sends_version_2_with_the_point_as_numbers(build_service):
    from sqlalchemy import select

    from services.common.models import OutboxMessage
    from services.intake.requests import submit_request
    intake = build_service("intake")
    data = {k: V1_BODY[k] for k in ("district", "name", "phone", "description", "channel", "location")}
    submit_request(intake, data, latitude=41.99, longitude=121.65)
    submit_request(intake, {**data, "location": "海州区解放路12号"})
    with intake.uow() as uow:
        sent = [row.envelope for row in uow.session.scalars(
            select(OutboxMessage).where(OutboxMessage.routing_key == "intake.case_submitted")
            .order_by(OutboxMessage.id))]
    assert [e["version"] for e in sent] == [2, 2]
    assert [(e["body"]["latitude"], e["body"]["longitude"]) for e in sent] == [(41.99, 121.65), (None, None)]
