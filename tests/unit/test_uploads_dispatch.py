"""Files in dispatch (SQLite, memory bus): the citizen's photos on the case page, scope on
every served file, attachments on notes and the reply, the co-handled list (docs/uploads.md)."""
from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from services.common.blobs import store_for
from services.common.bus.messages import make_envelope
from services.common.demo import DEMO_PASSWORD, load_demo_accounts
from services.common.models import AuditEntry, TimelineEntry, WorkItem
from services.common.web.app import create_app
from services.dispatch.models import CaseFile
from tests.support.db import blob_files, count
from tests.unit.test_uploads import image_bytes, pdf_bytes
from tests.support.http import csrf_token

HTML = b"<!doctype html><script>alert(document.cookie)</script>"


def login(client, username):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"username": username, "password": DEMO_PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return client


# -- dispatch -----------------------------------------------------------------------------

CASE, OTHER = "210902-20261102-0001", "210902-20261102-0002"


@pytest.fixture
def dispatch(build_service):
    service = build_service("dispatch")
    load_demo_accounts(service)
    return service


def deliver(dispatch, case_no, photos=()):
    body = {"case_no": case_no, "district": "210902", "name": "张三", "phone": "13800001234",
            "description": "楼上漏水，天花板一直滴水", "category": "", "channel": "web", "location": "",
            "submitted_at": "2026-11-02T09:00:00+00:00", "photos": list(photos)}
    dispatch.apply_message(make_envelope("intake.case_submitted", body, "intake", dispatch.clock.now()))


def stored_photo(service, name="现场.jpg", colour="red"):
    from services.common import uploads
    prepared = uploads.prepare(name, image_bytes(colour=colour), uploads.photo_policy(service.settings))
    return uploads.store_uploads(store_for(service.settings), [prepared])[0]


def assign(dispatch, case_no, department="zhujian", co=()):
    client = login(create_app(dispatch).test_client(), "fenbo_haizhou")
    page = client.get(f"/cases/{case_no}").get_data(as_text=True)
    response = client.post(f"/cases/{case_no}/assign", data={
        "csrf_token": csrf_token(page), "case_no": case_no, "department": department, "co_departments": list(co)})
    assert response.status_code == 302


def test_the_case_page_shows_the_citizens_photos_to_those_who_read_the_case(dispatch):
    photo = stored_photo(dispatch)
    deliver(dispatch, CASE, [photo])
    deliver(dispatch, OTHER)
    with dispatch.uow() as uow:
        (row,) = uow.session.scalars(select(CaseFile)).all()
    assert (row.case_no, row.kind, row.sha256) == (CASE, "photo", photo["sha256"])
    dispatcher = login(create_app(dispatch).test_client(), "fenbo_haizhou")
    page = dispatcher.get(f"/cases/{CASE}").get_data(as_text=True)
    url = f"/cases/{CASE}/files/{photo['sha256']}"
    assert "现场照片" in page and f'href="{url}"' in page and f"{url}?thumbnail=1" in page
    response = dispatcher.get(url)
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert response.headers["Content-Disposition"].startswith("inline;")
    assert dispatcher.get(url + "?thumbnail=1").status_code == 200
    # The same key under a case that does not hold it opens nothing.
    assert dispatcher.get(f"/cases/{OTHER}/files/{photo['sha256']}").status_code == 404
    # Other districts' dispatchers and departments the case is not assigned to: 403.
    for username in ("fenbo_xihe", "bm_zhujian", "bm_huanbao"):
        client = login(create_app(dispatch).test_client(), username)
        assert client.get(url).status_code == 403, username
    assert create_app(dispatch).test_client().get(url).status_code in (302, 401)  # not logged in
    assign(dispatch, CASE, "zhujian")
    assert login(create_app(dispatch).test_client(), "bm_zhujian").get(url).status_code == 200
    assert login(create_app(dispatch).test_client(), "bm_huanbao").get(url).status_code == 403


def test_a_message_with_a_bad_photo_reference_is_refused(dispatch):
    from services.common.bus.messages import InvalidMessage
    bad = {**stored_photo(dispatch), "sha256": "../../etc/passwd"}
    with pytest.raises(InvalidMessage):
        deliver(dispatch, CASE, [bad])
    assert count(dispatch, CaseFile) == 0


def upload(*files):
    return [(io.BytesIO(data), name) for name, data in files]


def test_a_co_handler_sees_the_case_in_its_inbox_and_adds_its_contribution_with_attachments(dispatch):
    deliver(dispatch, CASE)
    deliver(dispatch, OTHER)
    assign(dispatch, CASE, "zhujian", co=["chengguan"])
    assign(dispatch, OTHER, "chengguan")  # led, not co-handled: not in the list
    helper = login(create_app(dispatch).test_client(), "bm_chengguan")
    inbox = helper.get("/inbox").get_data(as_text=True)
    co_list = inbox[inbox.index('id="co-handled"'):]
    assert "协办案件" in inbox and CASE in co_list and OTHER not in co_list[:co_list.index("</table>")]
    assert CASE not in login(create_app(dispatch).test_client(), "bm_zhujian").get("/inbox").get_data(
        as_text=True).split('id="co-handled"')[1]  # the lead's own case is not "co-handled" for it
    page = helper.get(f"/cases/{CASE}").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page and 'name="attachments"' in page
    response = helper.post(f"/cases/{CASE}/note", data={
        "csrf_token": csrf_token(page), "case_no": CASE, "text": "已派执法队员现场查看",
        "attachments": upload(("现场.jpg", image_bytes()), ("/home/u/../检查记录.pdf", pdf_bytes()))},
        content_type="multipart/form-data", follow_redirects=True)
    html = response.get_data(as_text=True)
    assert "办理记录已添加" in html
    with dispatch.uow() as uow:
        entry = uow.session.scalars(select(TimelineEntry).where(TimelineEntry.title == "协办意见")).one()
        rows = uow.session.scalars(select(CaseFile).order_by(CaseFile.id)).all()
        audit = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "dispatch.note")).one()
    assert [(r.kind, r.filename, r.timeline_id, r.department) for r in rows] == [
        ("attachment", "现场.jpg", entry.id, "chengguan"), ("attachment", "检查记录.pdf", entry.id, "chengguan")]
    assert audit.detail == {"attachments": [r.sha256 for r in rows]}
    assert "检查记录.pdf" in html and "办理附件" in html
    pdf = helper.get(f"/cases/{CASE}/files/{rows[1].sha256}")
    assert pdf.mimetype == "application/pdf" and pdf.headers["Content-Disposition"].startswith("attachment;")
    # The lead department reads its co-handler's attachments; others do not.
    assert login(create_app(dispatch).test_client(), "bm_zhujian").get(
        f"/cases/{CASE}/files/{rows[1].sha256}").status_code == 200
    assert login(create_app(dispatch).test_client(), "bm_huanbao").get(
        f"/cases/{CASE}/files/{rows[1].sha256}").status_code == 403


def test_the_reply_carries_attachments_and_a_bad_one_changes_nothing(dispatch):
    deliver(dispatch, CASE)
    assign(dispatch, CASE, "zhujian")
    lead = login(create_app(dispatch).test_client(), "bm_zhujian")
    page = lead.get(f"/cases/{CASE}").get_data(as_text=True)
    lead.post(f"/cases/{CASE}/accept", data={"csrf_token": csrf_token(page), "case_no": CASE})
    page = lead.get(f"/cases/{CASE}").get_data(as_text=True)
    bad = lead.post(f"/cases/{CASE}/reply", data={
        "csrf_token": csrf_token(page), "case_no": CASE, "reply": "已维修完毕",
        "attachments": upload(("回复函.pdf", HTML))}, content_type="multipart/form-data")
    assert bad.status_code == 400 and "不是可接受的附件格式" in bad.get_data(as_text=True)
    with dispatch.uow() as uow:
        assert uow.session.scalars(select(WorkItem.task_name).where(WorkItem.case_no == CASE)).all() == ["resolve"]
    assert count(dispatch, CaseFile) == 0 and blob_files(dispatch) == []
    done = lead.post(f"/cases/{CASE}/reply", data={
        "csrf_token": csrf_token(page), "case_no": CASE, "reply": "已维修完毕",
        "attachments": upload(("回复函.pdf", pdf_bytes()))}, content_type="multipart/form-data", follow_redirects=True)
    assert "办理结果已提交" in done.get_data(as_text=True)
    with dispatch.uow() as uow:
        (row,) = uow.session.scalars(select(CaseFile)).all()
        entry = uow.session.get(TimelineEntry, row.timeline_id)
        audit = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "dispatch.reply")).one()
    assert entry.title == "办理结果附件" and entry.detail == "回复函.pdf" and entry.public is False
    assert audit.detail["attachments"] == [row.sha256]
    # After the case is closed, supervisors still read it and its files.
    supervisor = login(create_app(dispatch).test_client(), "supervisor")
    assert supervisor.get(f"/cases/{CASE}/files/{row.sha256}").status_code == 200
