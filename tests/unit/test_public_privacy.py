"""Public pages never show personal data: cases with a known name, phone numbers, an e-mail
address and a street address are planted through the channels (JSON API, Open311, a reply
that names the citizen, a typical case), then every route that anonymous visitors may use
(``RULES`` of tests/unit/test_route_matrix.py, all four services) is requested — status page,
API v1, Open311 in JSON and XML, typical cases, their Atom feed, notices … — and every
answer is searched for the planted values."""
from __future__ import annotations

import html
import re

from flask import url_for

from services.common.bus.messages import make_envelope
from services.common.config import SERVICES
from services.common.web.app import create_app
from services.intake.open311 import DEV_API_KEY
from services.intake.publicity import draft_summary, publish_notice, publish_typical_case
from services.intake.models import CitizenRequest
from tests.unit.test_route_matrix import EVERYONE, RULES, URL_VALUES

NAME, PHONE, OTHER_PHONE, EMAIL = "欧阳娜娜", "13800001234", "13912345678", "oyn@example.cn"
STREET, DOOR = "中华路18号", "3单元502"  # a road and number names a place; the unit and room, a home
PLANTED = (NAME, PHONE, OTHER_PHONE, EMAIL, DOOR, "138-0000-1234")
CITIZEN = {"district": "海州区", "name": NAME, "phone": PHONE, "category": "housing",
           "description": f"楼上漏水一周了，{NAME}白天不在家，请打{OTHER_PHONE}或发邮件到{EMAIL}",
           "location": f"海州区{STREET}{DOOR}"}


def plant(intake):
    """Cases carrying personal data in every field a public page might draw from."""
    client = create_app(intake).test_client()
    handled = client.post("/api/v1/requests", json=CITIZEN).get_json()
    opened = client.post("/api/v1/requests", json={**CITIZEN, "category": ""}).get_json()
    client.post("/open311/v2/requests.json", data={
        "api_key": DEV_API_KEY, "service_code": "water", "attribute[district]": "210902",
        "first_name": "娜娜", "last_name": "欧阳", "phone": PHONE, "email": EMAIL,
        "description": f"停水三天，联系{NAME} {OTHER_PHONE}", "address_string": f"{STREET}{DOOR}",
        "lat": "42.0", "long": "121.6"})
    no = handled["case_no"]
    reply = f"已联系{NAME}（{PHONE}，138-0000-1234）到{STREET}{DOOR}上门维修，楼上已修好"
    for message, body in (("dispatch.case_assigned", {"department": "zhujian", "department_name": "市住建局",
                                                      "summary": "市住建局"}),
                          ("dispatch.case_handled", {"department": "zhujian", "reply": reply, "summary": reply})):
        intake.apply_message(make_envelope(message, {"case_no": no, **body}, "dispatch", intake.clock.now()))
    with intake.uow() as uow:
        case = uow.session.get(CitizenRequest, no)
        summary = draft_summary(case, reply)
    typical = publish_typical_case(intake, no, "楼上漏水及时修复", "housing", summary, "operator")
    notice = publish_notice(intake, "停水通知", "中华路一带明日停水", "210902", "operator")
    return handled, opened, typical, notice


def leaks(text: str) -> list[str]:
    text = html.unescape(text)
    return [value for value in PLANTED if value in text]


def public_requests(name, app, values, queries):
    """(label, response) for every route anonymous visitors may use."""
    client = app.test_client()
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                if "anonymous" not in RULES[name].get((rule.endpoint, method), _NOBODY).allow:
                    continue
                missing = rule.arguments - values.keys()
                assert not missing, f"{rule.endpoint}: no placeholder for {missing}"
                for fmt in (["json", "xml"] if "fmt" in rule.arguments else [None]):
                    args = {k: values[k] for k in rule.arguments}
                    if fmt:
                        args["fmt"] = fmt
                    url = url_for(rule.endpoint, **args, **queries.get(rule.endpoint, {}))
                    yield f"{method} {url}", client.open(url, method=method, data=queries.get(
                        rule.endpoint) if method == "POST" else None)


class _Nobody:
    allow = frozenset()


_NOBODY = _Nobody()


def test_no_public_route_shows_personal_data(build_service):
    intake = build_service("intake")
    handled, opened, typical, notice = plant(intake)
    seen, problems = 0, []
    for name in SERVICES:
        service = intake if name == "intake" else build_service(name)
        app = create_app(service)
        values = {**URL_VALUES, "case_no": handled["case_no"], "token": handled["case_no"],
                  "typical_id": typical.id, "notice_id": notice.id}
        code = {"case_no": handled["case_no"], "tracking_code": handled["tracking_code"]}
        queries = {"citizen.status": code, "api.get_request": {"tracking_code": handled["tracking_code"]},
                   "open311.list_requests": {}}
        for label, response in public_requests(name, app, values, queries):
            if response.status_code >= 500:
                problems.append(f"{label}: {response.status_code}")
            found = leaks(response.get_data(as_text=True))
            if found:
                problems.append(f"{label}: shows {found}")
            seen += 1
        if name == "intake":  # the other planted cases, looked up the citizen's way
            client = app.test_client()
            for created in (opened,):
                page = client.get(f"/status?case_no={created['case_no']}&tracking_code={created['tracking_code']}")
                api = client.get(f"/api/v1/requests/{created['case_no']}?tracking_code={created['tracking_code']}")
                problems += [f"lookup {created['case_no']}: shows {leaks(r.get_data(as_text=True))}"
                             for r in (page, api) if leaks(r.get_data(as_text=True))]
    assert seen > 20
    assert not problems, "\n".join(problems)


def test_the_scan_would_notice_a_leak(build_service):
    """The status page does show the case: the scan must see planted text where it is public."""
    intake = build_service("intake")
    handled, *_ = plant(intake)
    page = create_app(intake).test_client().get(
        f"/status?case_no={handled['case_no']}&tracking_code={handled['tracking_code']}").get_data(as_text=True)
    assert "楼上已修好" in page and handled["case_no"] in page  # the reply is there, masked
    assert leaks(f"<p>{html.escape(NAME)}</p>") == [NAME]
    assert re.search(r"＊＊＊", page)
