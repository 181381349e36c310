"""Open311 GeoReport v2 at /open311/v2, through a small client written against the spec.

The client reads answers with the standard library only (json, xml.etree), so the tests
check the wire format the spec defines, not our serializer's idea of it.
"""
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.common.bus.messages import make_envelope
from services.common.config import from_env
from services.common.models import OutboxMessage
from services.common.reference import CATEGORIES, DISTRICTS
from services.common.web.app import create_app
from services.intake.models import CitizenRequest
from tests.support.db import count

DEV_KEY = "fzt-open311-dev"
W3C = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")
CASE_NO = re.compile(r"^210902-\d{8}-\d{4}$")
NAME, PHONE, EMAIL = "张三丰", "13800001234", "zhang@example.org"
REQUEST = {"service_code": "housing", "attribute[district]": "210902", "first_name": "三丰", "last_name": "张",
           "phone": PHONE, "email": EMAIL, "description": "楼上漏水，天花板一直滴水",
           "lat": "42.011162", "long": "121.670323", "address_string": "海州区中华路12号",
           "media_url": "https://img.example.org/leak.jpg"}


class GeoReportClient:
    """What a GeoReport v2 app does: GET and POST ``<resource>.<format>``, read XML or JSON."""

    def __init__(self, http, base="/open311/v2"):
        self.http, self.base = http, base

    def get(self, resource, fmt="json", **params):
        return self._read(self.http.get(f"{self.base}/{resource}.{fmt}", query_string=params), fmt)

    def post(self, fields, fmt="json"):
        # application/x-www-form-urlencoded, as the spec requires
        return self._read(self.http.post(f"{self.base}/requests.{fmt}", data=fields), fmt)

    def _read(self, response, fmt):
        raw = response.get_data(as_text=True)
        if fmt == "json":
            assert response.headers["Content-Type"] == "application/json; charset=utf-8"
            return response.status_code, json.loads(raw), raw
        assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
        assert raw.startswith('<?xml version="1.0" encoding="UTF-8"?>')
        return response.status_code, ET.fromstring(response.get_data()), raw


def records(root, list_tag, item_tag):
    """<list_tag><item_tag><field>text</field>…</item_tag>…</list_tag> → [{field: text}]."""
    assert root.tag == list_tag
    assert all(child.tag == item_tag for child in root)
    return [{field.tag: field.text for field in item} for item in root]


@pytest.fixture
def intake(build_service):
    return build_service("intake")


@pytest.fixture
def http(intake):
    return create_app(intake).test_client()


@pytest.fixture
def client(http):
    return GeoReportClient(http)


def submit(client, fmt="json", **changes):
    status, body, _ = client.post({"api_key": DEV_KEY, **REQUEST, **changes}, fmt)
    assert status == 200, body
    if fmt == "json":
        return body[0]["service_request_id"]
    return records(body, "service_requests", "request")[0]["service_request_id"]


def stored(service, case_no):
    with service.uow() as uow:
        return uow.session.get(CitizenRequest, case_no)


def dispatch_says(intake, message_type, case_no, **body):
    intake.apply_message(make_envelope(message_type, {"case_no": case_no, **body}, "dispatch", intake.clock.now()))


# -- discovery and services ------------------------------------------------------------------

def test_discovery_names_the_v2_endpoint_in_both_formats(client):
    status, body, _ = client.get("discovery")
    assert status == 200
    assert body["contact"] and body["key_service"] and W3C.match(body["changeset"])
    [endpoint] = body["endpoints"]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"].endswith("/open311/v2")
    assert set(endpoint["formats"]) == {"text/xml", "application/json"}
    assert endpoint["type"] in ("production", "test")

    status, root, _ = client.get("discovery", "xml")
    assert (status, root.tag) == (200, "discovery")
    assert [f.text for f in root.findall("./endpoints/endpoint/formats/format")] == endpoint["formats"]
    assert root.findtext("./endpoints/endpoint/specification") == "http://wiki.open311.org/GeoReport_v2"
    assert root.findtext("key_service") == body["key_service"]


def test_one_service_per_category(client):
    status, services, _ = client.get("services")
    assert status == 200
    assert [s["service_code"] for s in services] == list(CATEGORIES)
    housing = services[0]
    assert housing["service_name"] == "住房物业"
    assert housing["type"] == "realtime" and housing["metadata"] is True
    assert housing["group"] and housing["keywords"] and housing["description"]

    status, root, _ = client.get("services", "xml")
    listed = records(root, "services", "service")
    assert [s["service_code"] for s in listed] == list(CATEGORIES)
    assert listed[0]["metadata"] == "true" and listed[0]["type"] == "realtime"
    assert set(listed[0]) == {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}


def test_service_definition_asks_for_the_district(client):
    status, definition, _ = client.get("services/heating")
    assert status == 200 and definition["service_code"] == "heating"
    [district] = definition["attributes"]
    assert district["code"] == "district" and district["datatype"] == "singlevaluelist"
    assert district["required"] is True and district["variable"] is True and district["order"] == 1
    assert {v["key"]: v["name"] for v in district["values"]} == DISTRICTS

    status, root, _ = client.get("services/heating", "xml")
    assert root.tag == "service_definition" and root.findtext("service_code") == "heating"
    [attribute] = root.findall("./attributes/attribute")
    assert attribute.findtext("required") == "true" and attribute.findtext("datatype") == "singlevaluelist"
    assert [v.findtext("key") for v in attribute.findall("./values/value")] == list(DISTRICTS)
    assert attribute.findall("./values/value")[2].findtext("name") == "海州区"


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_unknown_service_code_definition_is_404(client, fmt):
    status, body, _ = client.get("services/potholes", fmt)
    assert status == 404
    errors = body if fmt == "json" else records(body, "errors", "error")
    assert str(errors[0]["code"]) == "404" and "potholes" in errors[0]["description"]


# -- POST a request -------------------------------------------------------------------------

@pytest.mark.parametrize("fields", [{}, {"api_key": ""}, {"api_key": "wrong-key"}])
def test_post_without_a_valid_api_key_is_403_and_stores_nothing(client, intake, fields):
    status, errors, _ = client.post({**REQUEST, **fields})
    assert status == 403
    assert errors[0]["code"] == 403 and "api_key" in errors[0]["description"]
    assert count(intake, CitizenRequest) == 0


def test_post_errors_in_xml_use_the_spec_elements(client):
    status, root, _ = client.post(REQUEST, "xml")
    assert status == 403
    [error] = records(root, "errors", "error")
    assert error["code"] == "403" and "api_key" in error["description"]


@pytest.mark.parametrize("changes, expected", [
    ({"service_code": "potholes"}, 404),
    ({"service_code": ""}, 400),
])
def test_post_with_bad_service_code(client, intake, changes, expected):
    status, errors, _ = client.post({"api_key": DEV_KEY, **REQUEST, **changes})
    assert status == expected and errors[0]["code"] == expected
    assert "service_code" in errors[0]["description"]
    assert count(intake, CitizenRequest) == 0


@pytest.mark.parametrize("changes", [
    {"lat": "", "long": "", "address_string": ""},  # no location at all
    {"long": "", "address_string": ""},  # lat without long
    {"lat": "north", "address_string": ""},
    {"lat": "95", "long": "121.6"},  # not a WGS84 latitude
    {"lat": "nan", "long": "121.6"},
])
def test_post_without_a_usable_location_is_400(client, intake, changes):
    status, errors, _ = client.post({"api_key": DEV_KEY, **REQUEST, **changes})
    assert status == 400
    assert any("lat" in e["description"] or "address_string" in e["description"] for e in errors)
    assert count(intake, CitizenRequest) == 0


def test_post_lists_every_problem_at_once(client, intake):
    fields = {"api_key": DEV_KEY, "service_code": "water", "address_string": "细河区", "phone": "12345",
              "description": "短", "attribute[district]": "北京市", "media_url": "javascript:alert(1)"}
    status, errors, _ = client.post(fields)
    assert status == 400
    text = " ".join(e["description"] for e in errors)
    for param in ("attribute[district]", "first_name/last_name", "phone", "description", "media_url"):
        assert param in text
    assert all(e["code"] == 400 for e in errors)
    assert count(intake, CitizenRequest) == 0


def test_valid_post_returns_the_case_number_and_starts_intake(client, intake):
    status, body, _ = client.post({"api_key": DEV_KEY, **REQUEST})
    assert status == 200
    [created] = body
    assert CASE_NO.match(created["service_request_id"])
    assert "token" not in created  # realtime: the id, never both
    assert created["service_notice"] and created["account_id"] is None
    row = stored(intake, created["service_request_id"])
    assert (row.channel, row.category, row.district) == ("open311", "housing", "210902")
    assert (row.name, row.phone, row.location) == (NAME, PHONE, "海州区中华路12号")
    assert (row.latitude, row.longitude) == (42.011162, 121.670323)
    assert row.media_url == "https://img.example.org/leak.jpg"
    with intake.uow() as uow:
        message = uow.session.scalars(select(OutboxMessage)).one()
    assert message.routing_key == "intake.case_submitted"
    assert message.envelope["body"]["channel"] == "open311"


def test_valid_post_in_xml_with_a_full_name_and_only_a_point(client, intake):
    fields = {**REQUEST, "first_name": "", "last_name": "", "name": "李四", "address_string": ""}
    case_no = submit(client, "xml", **fields)
    row = stored(intake, case_no)
    assert row.name == "李四"
    assert row.location == "经纬度 42.011162,121.670323"  # what dispatchers read
    _, [public], _ = client.get(f"requests/{case_no}")
    assert public["address"] is None and public["lat"] == 42.011162


def test_district_may_be_given_by_name(client, intake):
    case_no = submit(client, **{"attribute[district]": "海州区"})
    assert stored(intake, case_no).district == "210902"


def test_configured_keys_replace_the_development_key(build_service):
    intake = build_service("intake", open311_api_keys=("key-one", "key-two"))
    client = GeoReportClient(create_app(intake).test_client())
    assert client.post({"api_key": DEV_KEY, **REQUEST})[0] == 403
    assert client.post({"api_key": "key-two", **REQUEST})[0] == 200


def test_production_without_configured_keys_takes_no_requests(intake):
    intake.settings = replace(intake.settings, env="production", secret_key="not-the-dev-one")
    client = GeoReportClient(create_app(intake).test_client())
    assert client.post({"api_key": DEV_KEY, **REQUEST})[0] == 403
    assert client.get("services")[0] == 200  # reading needs no key


def test_keys_come_from_the_environment():
    settings = from_env({"FZT_OPEN311_API_KEYS": " app-a, app-b ,,"})
    assert settings.open311_api_keys == ("app-a", "app-b")
    assert from_env({}).open311_api_keys == ()


def test_post_needs_no_csrf_token_even_with_a_session_cookie(http, intake):
    http.get("/")  # the citizen form: a session cookie with a CSRF token is now set
    response = http.post("/open311/v2/requests.json", data={"api_key": DEV_KEY, **REQUEST})
    assert response.status_code == 200


# -- GET requests -----------------------------------------------------------------------------

def test_get_one_request_in_json_and_xml(client, intake):
    case_no = submit(client)
    status, body, _ = client.get(f"requests/{case_no}")
    assert status == 200
    [request] = body
    assert request["service_request_id"] == case_no
    assert request["status"] == "open" and request["status_notes"] == "诉求已提交，等待分拨"
    assert (request["service_code"], request["service_name"]) == ("housing", "住房物业")
    assert request["description"] == REQUEST["description"]
    assert request["address"] == "海州区中华路12号"
    assert (request["lat"], request["long"]) == (42.011162, 121.670323)
    assert request["media_url"] == REQUEST["media_url"]
    assert request["agency_responsible"]
    assert W3C.match(request["requested_datetime"]) and W3C.match(request["updated_datetime"])
    assert request["requested_datetime"] == "2026-11-02T17:00:00+08:00"  # FrozenClock 09:00 UTC

    status, root, _ = client.get(f"requests/{case_no}", "xml")
    [as_xml] = records(root, "service_requests", "request")
    assert as_xml["service_request_id"] == case_no and as_xml["status"] == "open"
    assert as_xml["requested_datetime"] == request["requested_datetime"]
    assert float(as_xml["lat"]) == request["lat"] and as_xml["address"] == request["address"]
    assert {"status_notes", "service_name", "agency_responsible", "updated_datetime", "long",
            "media_url"} <= set(as_xml)


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_unknown_request_is_404(client, fmt):
    status, body, _ = client.get("requests/210902-20261102-9999", fmt)
    assert status == 404
    errors = body if fmt == "json" else records(body, "errors", "error")
    assert str(errors[0]["code"]) == "404"


def test_token_is_the_request_id(client):
    case_no = submit(client)
    status, [answer], _ = client.get(f"tokens/{case_no}")
    assert (status, answer) == (200, {"service_request_id": case_no, "token": case_no})
    status, root, _ = client.get(f"tokens/{case_no}", "xml")
    assert records(root, "service_requests", "request") == [{"service_request_id": case_no, "token": case_no}]
    assert client.get("tokens/nope")[0] == 404


def test_status_follows_the_case_and_closes_on_handling_or_rejection(client, intake):
    handled, rejected, waiting = submit(client), submit(client), submit(client)
    intake.clock.advance(timedelta(hours=2))
    dispatch_says(intake, "dispatch.case_assigned", handled, department="zhujian",
                  department_name="市住房和城乡建设局", summary="市住房和城乡建设局")
    _, [assigned], _ = client.get(f"requests/{handled}")
    assert assigned["status"] == "open" and assigned["agency_responsible"] == "市住房和城乡建设局"
    assert assigned["status_notes"] == "已交办：市住房和城乡建设局"
    assert assigned["updated_datetime"] == "2026-11-02T19:00:00+08:00"

    intake.clock.advance(timedelta(days=1))
    reply = f"已维修完毕，{NAME}您好，如有问题请联系{PHONE}"
    dispatch_says(intake, "dispatch.case_handled", handled, department="zhujian", reply=reply, summary=reply)
    dispatch_says(intake, "dispatch.case_rejected", rejected, reason="不属于受理范围",
                  summary="经审核不属于诉求受理范围：不属于受理范围")
    _, body, _ = client.get("requests", service_request_id=f"{handled},{rejected},{waiting}")
    by_id = {r["service_request_id"]: r for r in body}
    assert by_id[handled]["status"] == "closed"
    assert by_id[handled]["updated_datetime"] == "2026-11-03T19:00:00+08:00"  # when it was closed
    assert by_id[handled]["status_notes"].startswith("已答复：已维修完毕")
    assert NAME not in by_id[handled]["status_notes"] and PHONE not in by_id[handled]["status_notes"]
    assert by_id[rejected]["status"] == "closed"
    assert by_id[rejected]["status_notes"] == "不予受理：经审核不属于诉求受理范围：不属于受理范围"
    assert by_id[waiting]["status"] == "open"


def test_list_filters(client, intake):
    first = submit(client)  # 2026-11-02 09:00 UTC
    intake.clock.advance(timedelta(days=2))
    heating = submit(client, service_code="heating")  # 2026-11-04
    intake.clock.advance(timedelta(days=2))
    closed = submit(client)  # 2026-11-06
    dispatch_says(intake, "dispatch.case_rejected", closed, reason="重复诉求")

    def ids(fmt="json", **params):
        status, body, _ = client.get("requests", fmt, **params)
        assert status == 200
        found = body if fmt == "json" else records(body, "service_requests", "request")
        return [r["service_request_id"] for r in found]

    assert ids() == [closed, heating, first]  # newest first, default: the last 90 days
    assert ids("xml") == [closed, heating, first]
    assert ids(service_code="heating") == [heating]
    assert ids(service_code="heating,housing") == [closed, heating, first]
    assert ids(status="open") == [heating, first]
    assert ids("xml", status="closed") == [closed]
    assert ids(status="open,closed") == [closed, heating, first]
    assert ids(start_date="2026-11-03T00:00:00+08:00") == [closed, heating]
    assert ids(start_date="2026-11-03T00:00:00Z", end_date="2026-11-05T00:00:00Z") == [heating]
    assert ids(end_date="2026-11-03T00:00:00+08:00") == [first]
    assert ids(start_date="2026-11-03", status="open", service_code="heating") == [heating]
    # service_request_id overrides every other argument
    assert ids(service_request_id=f"{first},{closed}", service_code="heating", status="open") == [closed, first]
    assert ids(service_code="potholes") == []


@pytest.mark.parametrize("params", [
    {"status": "pending"},
    {"start_date": "yesterday"},
    {"start_date": "2026-11-05T00:00:00Z", "end_date": "2026-11-01T00:00:00Z"},
    {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-11-01T00:00:00Z"},  # more than 90 days
])
def test_bad_list_arguments_are_400(client, params):
    status, errors, _ = client.get("requests", **params)
    assert status == 400 and errors[0]["code"] == 400


def test_no_personal_data_in_any_get(client, intake):
    case_no = submit(client, description=f"楼上漏水，我是{NAME}，请回电{PHONE}或发邮件{EMAIL}，"
                                         "身份证210902199001011234")
    other = submit(client, phone="0418-2812345", description="路灯不亮，请拨0418-2812345找我")
    tracking = [stored(intake, c).tracking_code for c in (case_no, other)]
    bodies = []
    for fmt in ("json", "xml"):
        for resource, params in [("requests", {}), (f"requests/{case_no}", {}), (f"requests/{other}", {}),
                                 (f"tokens/{case_no}", {}), ("requests", {"service_request_id": case_no})]:
            status, _, raw = client.get(resource, fmt, **params)
            assert status == 200
            bodies.append(raw)
    for raw in bodies:
        for secret in (NAME, PHONE, "2812345", EMAIL, "210902199001011234", *tracking):
            assert secret not in raw
        assert "tracking" not in raw and "phone" not in raw and "email" not in raw
    _, [shown], _ = client.get(f"requests/{case_no}")
    assert shown["description"].startswith("楼上漏水，我是＊＊＊")


def test_xml_stays_well_formed_whatever_the_citizen_typed(client):
    case_no = submit(client, description="漏水 <b>&amp; \"严重\" 'x'\x07\x1b 水管\U0001F4A7")
    status, root, _ = client.get(f"requests/{case_no}", "xml")
    assert status == 200
    assert root.findtext("./request/description") == "漏水 <b>&amp; \"严重\" 'x' 水管\U0001F4A7"
    _, [as_json], _ = client.get(f"requests/{case_no}")
    assert as_json["description"].startswith("漏水 <b>&amp;")


def test_unknown_resources_and_formats_answer_in_the_spec_error_format(client, http):
    response = http.get("/open311/v2/services.html")
    assert response.status_code == 404
    assert ET.fromstring(response.get_data()).tag == "errors"
    response = http.get("/open311/v2/nothing.json")
    assert response.status_code == 404 and json.loads(response.get_data())[0]["code"] == 404
