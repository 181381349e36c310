"""Dispatch pages through Flask's test client (SQLite): bulk assign, notes."""
import re

import pytest
from sqlalchemy import select

from services.common.demo import DEMO_PASSWORD, load_demo_accounts
from services.common.models import TimelineEntry, WorkItem
from services.common.web.app import create_app


def submission(n, district="210902"):
    return {"case_no": f"{district}-20261102-{n:04d}", "district": district, "name": "张三",
            "phone": "13800001234", "description": f"第{n}件：楼上漏水", "category": "", "channel": "web",
            "location": "", "submitted_at": "2026-11-02T09:00:00+00:00"}


@pytest.fixture
def dispatch(build_service):
    service = build_service("dispatch")
    load_demo_accounts(service)
    for body in (submission(1), submission(2), submission(3), submission(4, "210911")):
        with service.uow() as uow:
            service.runtime.deliver(uow, "intake.case_submitted", body, body["case_no"])
            uow.commit()
    return service


def login(client, username):
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"', page)
    response = client.post("/login", data={"username": username, "password": DEMO_PASSWORD,
                                           "csrf_token": token.group(1) or token.group(2)})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]


def csrf(html):
    match = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html)
    return match.group(1)


def waiting(service, task):
    with service.uow() as uow:
        return {i.case_no: i.department for i in uow.session.scalars(select(WorkItem).where(WorkItem.task_name == task))}


def test_bulk_assign_assigns_each_and_reports_the_ones_it_could_not(dispatch):
    client = create_app(dispatch).test_client()
    login(client, "fenbo_haizhou")
    queue = client.get("/queue").get_data(as_text=True)
    assert "批量交办" in queue and queue.count('name="case_nos"') == 3  # only this district's cases
    response = client.post("/bulk-assign", data={
        "csrf_token": csrf(queue), "department": "zhujian",
        "case_nos": ["210902-20261102-0001", "210902-20261102-0002", "210911-20261102-0004"]},
        follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "已交办市住房和城乡建设局 2 件" in page and "1 件未交办" in page
    assert waiting(dispatch, "accept") == {"210902-20261102-0001": "zhujian", "210902-20261102-0002": "zhujian"}
    assert set(waiting(dispatch, "assign")) == {"210902-20261102-0003", "210911-20261102-0004"}


def test_bulk_assign_needs_a_selection_and_a_department(dispatch):
    client = create_app(dispatch).test_client()
    login(client, "fenbo_haizhou")
    token = csrf(client.get("/queue").get_data(as_text=True))
    page = client.post("/bulk-assign", data={"csrf_token": token, "department": "zhujian"},
                       follow_redirects=True).get_data(as_text=True)
    assert "请先勾选要交办的案件" in page
    assert len(waiting(dispatch, "assign")) == 4
    assert client.post("/bulk-assign", data={"department": "zhujian", "case_nos": ["x"]}).status_code == 400  # no CSRF


def test_handler_adds_a_note_on_the_case_page(dispatch):
    client = create_app(dispatch).test_client()
    login(client, "fenbo_haizhou")
    queue = client.get("/queue").get_data(as_text=True)
    client.post("/cases/210902-20261102-0001/assign", data={"csrf_token": csrf(queue), "department": "zhujian",
                                                             "case_no": "210902-20261102-0001"})
    handler = create_app(dispatch).test_client()
    login(handler, "bm_zhujian")
    page = handler.get("/cases/210902-20261102-0001").get_data(as_text=True)
    assert "添加办理记录" in page
    response = handler.post("/cases/210902-20261102-0001/note", data={
        "csrf_token": csrf(page), "case_no": "210902-20261102-0001", "text": "已约物业上门"}, follow_redirects=True)
    assert "办理记录已添加" in response.get_data(as_text=True)
    with dispatch.uow() as uow:
        note = uow.session.scalars(select(TimelineEntry).where(TimelineEntry.title == "办理记录")).one()
    assert note.detail == "已约物业上门" and note.public is False


def test_dispatcher_merges_a_duplicate_on_the_case_page(dispatch):
    client = create_app(dispatch).test_client()
    login(client, "fenbo_haizhou")
    page = client.get("/cases/210902-20261102-0002").get_data(as_text=True)
    assert "并入其他案件" in page
    bad = client.post("/cases/210902-20261102-0002/merge", data={
        "csrf_token": csrf(page), "case_no": "210902-20261102-0002", "into": "210902-20261102-0099"})
    assert bad.status_code == 400 and "不存在或已办结" in bad.get_data(as_text=True)
    done = client.post("/cases/210902-20261102-0002/merge", data={
        "csrf_token": csrf(page), "case_no": "210902-20261102-0002", "into": "210902-20261102-0001"},
        follow_redirects=True)
    assert "已并入案件 210902-20261102-0001" in done.get_data(as_text=True)
    assert "210902-20261102-0002" not in waiting(dispatch, "assign")


def test_queue_rows_preselect_the_suggestion_and_post_as_the_assign_form(dispatch):
    client = create_app(dispatch).test_client()
    login(client, "fenbo_haizhou")
    queue = client.get("/queue").get_data(as_text=True)
    select = re.search(r'<select[^>]*id="dep-210902-20261102-0001"[^>]*>(.*?)</select>', queue).group(1)
    assert re.findall(r'<option value="(\w*)" selected>', select) == ["zhujian"]  # the DMN's suggestion
    assert select.count("<option") == 12  # the placeholder and the 11 departments
    response = client.post("/cases/210902-20261102-0001/assign", data={
        "csrf_token": csrf(queue), "case_no": "210902-20261102-0001", "department": "zhujian", "next": "/queue"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/queue")
    assert waiting(dispatch, "accept") == {"210902-20261102-0001": "zhujian"}


def test_a_returned_case_does_not_preselect_the_department_that_returned_it():
    from types import SimpleNamespace

    from services.dispatch.views import department_options, suggested_department
    returned = SimpleNamespace(department="zhujian", summary={"suggested_department": "zhujian", "return_count": 1})
    assert suggested_department(returned) is None
    assert suggested_department(SimpleNamespace(department=None, summary={"suggested_department": "gongan"})) == "gongan"
    assert '<option value="" selected>请选择承办部门</option>' in department_options(None)
    assert str(department_options("gongan")).count(" selected") == 1


def test_queue_rows_for_a_returned_case_and_for_fallback_post_their_acts(dispatch):
    from services.dispatch import cases
    from tests.support.users import User
    dispatcher = User("dispatcher", district="210902", display_name="海州区分拨员")
    case_no = "210902-20261102-0001"
    cases.assign(dispatch, dispatcher, case_no, "zhujian")
    cases.return_case(dispatch, User("handler", department="zhujian"), case_no, "不属于本部门职责")
    client = create_app(dispatch).test_client()
    login(client, "fenbo_haizhou")

    def row_select(html):
        return re.search(rf'<select aria-label="(\w+)" id="dep-{case_no}"[^>]*>(.*?)</select>', html).groups()

    label, options = row_select(client.get("/queue").get_data(as_text=True))
    assert label == "承办部门" and re.findall(r'value="(\w*)" selected', options) == [""]  # not 住建 again
    for department, handler in (("gongan", "gongan"), ("zhujian", "zhujian")):
        cases.assign(dispatch, dispatcher, case_no, department)
        cases.return_case(dispatch, User("handler", department=handler), case_no, "不属于本部门职责")
    queue = client.get("/queue").get_data(as_text=True)
    label, options = row_select(queue)
    assert label == "兜底承办部门" and re.findall(r'value="(\w*)" selected', options) == [""]
    assert f'action="/cases/{case_no}/designate"' in queue
    response = client.post(f"/cases/{case_no}/designate", data={
        "csrf_token": csrf(queue), "case_no": case_no, "department": "chengguan", "next": "/queue"})
    assert response.status_code == 302
    assert waiting(dispatch, "accept")[case_no] == "chengguan"
