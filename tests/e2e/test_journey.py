"""The citizen → dispatcher → department journey over HTTP, in both deployment modes.

``one``:  ``fzt run-all`` (SQLite + in-memory bus), one process.
``four``: ``fzt serve`` + ``fzt worker`` per service on PostgreSQL and RabbitMQ (eight processes).

One cluster per mode for the whole module (starting one takes a few seconds); every test
submits its own cases, so tests do not depend on each other's order.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.common.config import SERVICES
from tests.support.cluster import FourProcessCluster, OneProcessCluster
from tests.support.http import HttpClient, csrf_token, login, url_with, wait_for

pytestmark = pytest.mark.e2e

PASSWORD = "demo12345"
WAIT = 30.0  # seconds for anything that crosses the bus
STAFF = ("admin", "fenbo_haizhou", "fenbo_xihe", "bm_zhujian", "bm_gongan")
LEAK = {"district": "海州区", "name": "张三", "phone": "13800138000",
        "description": "楼上卫生间漏水，我家天花板渗水严重", "location": "海州区中华路1号"}


class Journey:
    """The public API of a running cluster, as a citizen and as staff."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.http = HttpClient()
        with ThreadPoolExecutor(len(STAFF)) as pool:  # `fzt token` starts a process each
            self.tokens = dict(zip(STAFF, pool.map(lambda u: cluster.token("dispatch", u), STAFF)))

    def url(self, service, path):
        return self.cluster.url(service, path)

    # citizen
    def submit(self, payload):
        return self.http.post(self.url("intake", "/api/v1/requests"), json=payload)

    def submit_ok(self, **changes):
        response = self.submit({**LEAK, **changes})
        assert response.status == 201, response
        return response.json

    def track(self, case_no, tracking_code):
        return self.http.get(url_with(self.url("intake", f"/api/v1/requests/{case_no}"),
                                      tracking_code=tracking_code))

    # staff
    def cases(self, user, status="assign", district=None):
        return self.http.get(url_with(self.url("dispatch", "/api/v1/cases"), status=status,
                                      district=district), token=self.tokens[user])

    def case_nos(self, user, status="assign", district=None):
        response = self.cases(user, status, district)
        assert response.status == 200, response
        return {c["case_no"]: c for c in response.json["cases"]}

    def assign(self, user, case_no, department):
        return self.http.post(self.url("dispatch", f"/api/v1/cases/{case_no}/assign"),
                              json={"department": department}, token=self.tokens[user])

    def act(self, user, case_no, act, **body):
        return self.http.post(self.url("dispatch", f"/api/v1/cases/{case_no}/{act}"), json=body,
                              token=self.tokens[user])

    def wait_in_list(self, user, case_no, status="assign", district=None):
        listed = wait_for(lambda: self.case_nos(user, status, district), lambda found: case_no in found,
                          WAIT, f"{case_no} in {user}'s {status} list")
        return listed[case_no]

    def staff_session(self, username):
        session = HttpClient()
        response = login(session, self.url("dispatch", "/login"), username, PASSWORD)
        assert response.status == 302, response
        return session


@pytest.fixture(scope="module", params=["one", "four"])
def journey(request, tmp_path_factory):
    var_dir = tmp_path_factory.mktemp(f"journey_{request.param}")
    if request.param == "one":
        cluster = OneProcessCluster(var_dir)
    else:
        make_database = request.getfixturevalue("make_pg_database")
        broker_url, new_prefix = request.getfixturevalue("rabbitmq")
        cluster = FourProcessCluster(var_dir, {s: make_database(f"journey_{s}") for s in SERVICES},
                                     broker_url, new_prefix())
    with cluster:
        yield Journey(cluster)


def test_submit_returns_case_number_and_tracking_code(journey):
    created = journey.submit_ok()
    assert re.fullmatch(r"210902-\d{8}-\d{4}", created["case_no"])
    assert re.fullmatch(r"[A-Z2-9]{8}", created["tracking_code"])
    by_code = journey.submit_ok(district="210902", category="housing")  # the code, not the name
    assert by_code["case_no"].startswith("210902-") and by_code["case_no"] != created["case_no"]

    status = journey.track(created["case_no"], created["tracking_code"].lower())  # case-insensitive
    assert status.status == 200, status
    assert status.json["case_no"] == created["case_no"]
    assert status.json["status"] == "submitted"
    assert status.json["district"] == "210902"
    assert [e["title"] for e in status.json["timeline"]] == ["诉求已提交，等待分拨"]


def test_invalid_submission_is_400_with_a_message_per_field(journey):
    response = journey.submit({"district": "火星区", "phone": "12345", "description": "短"})
    assert response.status == 400, response
    assert response.json["error"] == "validation_failed"
    assert set(response.json["fields"]) == {"district", "name", "phone", "description"}
    assert all(isinstance(m, list) and m for m in response.json["fields"].values())

    response = journey.submit({**LEAK, "category": "unknown", "channel": "fax"})
    assert response.status == 400, response
    assert set(response.json["fields"]) == {"category", "channel"}

    response = journey.submit(["not", "an", "object"])
    assert response.status == 400 and "_schema" in response.json["fields"], response

    response = journey.http.post(journey.url("intake", "/api/v1/requests"), data=b"name=x",
                                 headers={"Content-Type": "application/json"})
    assert response.status == 400 and response.json["error"] == "invalid_json", response


def test_wrong_tracking_code_or_unknown_case_is_404(journey):
    created = journey.submit_ok()
    assert journey.track(created["case_no"], "WRONG234").status == 404
    assert journey.track(created["case_no"], "").status == 404
    response = journey.track("210902-20000101-9999", created["tracking_code"])
    assert response.status == 404 and response.json["error"] == "not_found", response


def test_journey_from_citizen_to_department(journey):
    created = journey.submit_ok()
    case_no = created["case_no"]

    # The bus carries the case to dispatch; the DMN suggests the housing bureau for a leak.
    item = journey.wait_in_list("fenbo_haizhou", case_no)
    assert item["suggested_department"] == "zhujian"
    assert item["district"] == "210902" and item["status"] == "assign"
    assert item["description"] == LEAK["description"]
    assert case_no in journey.case_nos("fenbo_haizhou", district="海州区")  # by name as well
    assert case_no in journey.case_nos("admin")  # the admin sees every district

    # Another district's dispatcher neither sees nor assigns it.
    assert case_no not in journey.case_nos("fenbo_xihe")
    assert journey.cases("fenbo_xihe", district="210902").status == 403
    response = journey.assign("fenbo_xihe", case_no, "zhujian")
    assert response.status == 403 and response.json["error"] == "forbidden", response
    # Department handlers do not assign.
    assert journey.assign("bm_zhujian", case_no, "zhujian").status == 403

    response = journey.assign("fenbo_haizhou", case_no, "no_such_department")
    assert response.status == 400 and "department" in response.json["fields"], response
    response = journey.http.post(journey.url("dispatch", f"/api/v1/cases/{case_no}/assign"), json={},
                                 token=journey.tokens["fenbo_haizhou"])
    assert response.status == 400 and "department" in response.json["fields"], response

    response = journey.assign("fenbo_haizhou", case_no, item["suggested_department"])
    assert response.status == 200, response
    assert response.json == {"case_no": case_no, "act": "assign", "status": "ok"}
    # The assign step is no longer waiting: a second assignment finds nothing to complete.
    again = journey.assign("fenbo_haizhou", case_no, "zhujian")
    assert again.status == 404 and again.json["error"] == "not_found", again
    assert case_no not in journey.case_nos("fenbo_haizhou")

    waiting = journey.wait_in_list("bm_zhujian", case_no, status="accept")
    assert waiting["department"] == "zhujian" and waiting["department_name"] == "市住房和城乡建设局"
    assert case_no not in journey.case_nos("bm_gongan", status="accept")
    assert journey.act("bm_gongan", case_no, "accept").status == 403  # not its case
    assert journey.act("bm_zhujian", case_no, "accept").status == 200
    assert case_no in journey.case_nos("bm_zhujian", status="resolve")

    # The citizen sees the acceptance once intake has taken dispatch's messages off the bus.
    status = wait_for(lambda: journey.track(case_no, created["tracking_code"]).json,
                      lambda s: [e["title"] for e in s["timeline"]][-1:] == ["已受理"], WAIT,
                      f"{case_no} accepted for the citizen")
    assert status["status"] == "assigned" and status["status_name"] == "已交办，部门办理中"
    entries = {e["title"]: e["detail"] for e in status["timeline"]}
    assert entries == {"诉求已提交，等待分拨": "", "已交办": "市住房和城乡建设局", "已受理": "市住房和城乡建设局"}

    response = journey.act("bm_zhujian", case_no, "reply", reply="已联系物业，漏水点已修复")
    assert response.status == 200, response
    status = wait_for(lambda: journey.track(case_no, created["tracking_code"]).json,
                      lambda s: s["status"] == "handled", WAIT, f"{case_no} handled for the citizen")
    assert status["status_name"] == "已答复，请评价"
    assert status["timeline"][-1] == {**status["timeline"][-1], "title": "已答复", "detail": "已联系物业，漏水点已修复"}

    # 回访 (docs/satisfaction.md): the citizen rates the reply on the status page; the case
    # closes in intake (for the citizen) and, through intake.case_closed, in dispatch.
    code = created["tracking_code"]
    page = journey.http.post(journey.url("intake", "/status"), form={
        "case_no": case_no, "tracking_code": code,
        "csrf_token": csrf_token(journey.http.get(journey.url("intake", "/status")).text)})
    assert page.status == 200 and 'id="rating"' in page.text, page
    rated = journey.http.post(journey.url("intake", "/status/rate"), form={
        "case_no": case_no, "tracking_code": code, "rating": "satisfied", "comment": "修得很及时",
        "csrf_token": csrf_token(page.text)})
    assert rated.status == 200 and "感谢您的评价" in rated.text, rated
    status = wait_for(lambda: journey.track(case_no, code).json, lambda s: s["status"] == "closed", WAIT,
                      f"{case_no} closed for the citizen")
    assert status["status_name"] == "已办结"
    assert [e["title"] for e in status["timeline"]][-2:] == ["诉求人评价", "已办结"]
    record = wait_for(lambda: journey.http.get(journey.url("dispatch", f"/api/v1/cases/{case_no}"),
                                               token=journey.tokens["admin"]),
                      lambda r: r.status == 200 and r.json["status"] == "complete", WAIT,
                      f"{case_no} closed in dispatch")
    assert [e["title"] for e in record.json["timeline"]][-1] == "诉求人满意"


def test_api_needs_a_valid_token(journey):
    url = url_with(journey.url("dispatch", "/api/v1/cases"), status="assign")
    assert journey.http.get(url).status == 401
    assert journey.http.get(url, token="forged.token").status == 401
    response = journey.cases("fenbo_haizhou", status="finished")
    assert response.status == 400 and response.json["error"] == "invalid_status", response


def test_api_post_without_token_is_401(journey):
    response = journey.http.post(journey.url("dispatch", "/api/v1/cases/210902-20000101-0001/assign"),
                                 json={"department": "zhujian"})
    assert response.status == 401, response


def test_staff_pages(journey):
    created = journey.submit_ok(description="小区物业长期不维修电梯，业主出行困难")
    case_no = created["case_no"]
    journey.wait_in_list("fenbo_haizhou", case_no)

    login_page = journey.http.get(journey.url("dispatch", "/login"))
    assert login_page.status == 200 and csrf_token(login_page.text)
    wrong = HttpClient()
    response = login(wrong, journey.url("dispatch", "/login"), "fenbo_haizhou", "not-the-password")
    assert response.status == 200 and "用户名或密码错误" in response.text
    assert wrong.get(journey.url("dispatch", "/queue")).status == 302  # still anonymous

    dispatcher = journey.staff_session("fenbo_haizhou")
    queue = dispatcher.get(journey.url("dispatch", "/queue"))
    assert queue.status == 200 and case_no in queue.text
    assert "建议：市住房和城乡建设局" in queue.text  # the DMN's suggestion, shown to the dispatcher
    assert case_no not in journey.staff_session("fenbo_xihe").get(journey.url("dispatch", "/queue")).text

    # Assign through the page's own form (CSRF token from the queue page).
    response = dispatcher.post(journey.url("dispatch", "/assign"), form={
        "case_no": case_no, "department": "zhujian", "csrf_token": csrf_token(queue.text)})
    assert response.status == 302, response

    handler = journey.staff_session("bm_zhujian")
    inbox = wait_for(lambda: handler.get(journey.url("dispatch", "/inbox")),
                     lambda page: case_no in page.text, WAIT, f"{case_no} in the zhujian inbox")
    assert inbox.status == 200
    assert handler.get(journey.url("dispatch", "/queue")).status == 403  # handlers have no queue

    admin_page = journey.staff_session("admin").get(journey.url("dispatch", f"/cases/{case_no}"))
    assert admin_page.status == 200 and case_no in admin_page.text
    assert journey.staff_session("fenbo_xihe").get(journey.url("dispatch", f"/cases/{case_no}")).status == 403
    assert HttpClient().get(journey.url("dispatch", f"/cases/{case_no}")).status == 302


def test_case_page_for_the_district_dispatcher_and_the_handler(journey):
    created = journey.submit_ok()
    case_no = created["case_no"]
    journey.wait_in_list("fenbo_haizhou", case_no)
    assert journey.assign("fenbo_haizhou", case_no, "zhujian").status == 200
    for user in ("fenbo_haizhou", "bm_zhujian"):
        page = journey.staff_session(user).get(journey.url("dispatch", f"/cases/{case_no}"))
        assert page.status == 200, (user, page)
        assert case_no in page.text and "市住房和城乡建设局" in page.text


def test_login_returns_to_the_page_asked_for(journey):
    session = HttpClient()
    response = session.get(journey.url("dispatch", "/queue"))
    assert response.status == 302
    origin = journey.url("dispatch", "").rsplit("/dispatch", 1)[0]
    login_url = origin + response.location
    page = session.get(login_url)
    response = session.post(login_url, form={"username": "fenbo_haizhou", "password": PASSWORD,
                                             "csrf_token": csrf_token(page.text)})
    assert response.status == 302
    assert response.location.startswith("/dispatch/queue"), response.location
    assert session.get(origin + response.location).status == 200


def test_staff_channels_reach_the_dispatcher_with_their_channel(journey):
    """Phone (an operator's token on API v1) and grid (the grid worker's filing page), end to end."""
    phoned = journey.http.post(journey.url("intake", "/api/v1/requests"),
                               json={**LEAK, "channel": "phone", "description": "来电反映：小区门口路灯不亮已经一周"},
                               token=journey.cluster.token("intake", "operator"))
    assert phoned.status == 201, phoned
    grid = HttpClient()
    assert login(grid, journey.url("intake", "/login"), "wangge_haizhou", PASSWORD).status == 302
    form = grid.get(journey.url("intake", "/staff/file"))
    filed = grid.post(journey.url("intake", "/staff/file"), form={
        "csrf_token": csrf_token(form.text), "channel": "grid", "district": "210902", "name": "李四",
        "phone": "13900001234", "description": "网格巡查发现：小区垃圾堆放多日未清运", "category": "", "location": ""})
    assert filed.status == 302, filed
    grid_case = re.search(r"210902-\d{8}-\d{4}", grid.get(journey.url("intake", "/staff/file")).text).group(0)
    for case_no, channel in ((phoned.json["case_no"], "phone"), (grid_case, "grid")):
        journey.wait_in_list("fenbo_haizhou", case_no)
        case = journey.http.get(journey.url("dispatch", f"/api/v1/cases/{case_no}"),
                                token=journey.tokens["fenbo_haizhou"])
        assert case.json["channel"] == channel, case
