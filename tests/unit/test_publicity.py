"""典型案例 and 通知公告 (services/intake/publicity.py) through Flask's test client (SQLite).

The privacy checks follow a real case: a citizen's request with a name, phone, ID number and
e-mail in it, handled by dispatch with a reply naming the citizen again, published with the
prefilled summary; the public list, the detail page and the Atom feed must show none of it.
"""
import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.common.bus.messages import make_envelope
from services.common.demo import DEMO_PASSWORD, load_demo_accounts
from services.common.web.app import create_app
from services.intake.models import CitizenRequest, Notice, TypicalCase
from services.intake.privacy import MASK
from tests.support.http import csrf_token

NAME, PHONE, ID_NO, EMAIL = "张三丰", "13912345678", "210902199001011234", "zsf@example.org"
DESCRIPTION = (f"我是{NAME}，家住海州区中华路小区，楼顶漏水三个月了，物业一直不修。请回电{PHONE}，"
               f"身份证{ID_NO}，邮箱{EMAIL}。")
REPLY = f"已联系{NAME}，督促物业于11月20日修复楼顶防水层，经回访{NAME}表示满意。联系电话{PHONE}。"
ATOM = "{http://www.w3.org/2005/Atom}"
SECRETS = (NAME, PHONE, ID_NO, EMAIL)


@pytest.fixture
def intake(build_service):
    service = build_service("intake")
    load_demo_accounts(service)
    return service


@pytest.fixture
def app(intake):
    return create_app(intake)


def login(client, username):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": DEMO_PASSWORD})
    assert response.status_code == 302 and "/login" not in response.headers["Location"]


def submit_case(client, **changes):
    page = client.get("/").get_data(as_text=True)
    data = {"csrf_token": csrf_token(page), "district": "210902", "name": NAME, "phone": PHONE,
            "category": "housing", "description": DESCRIPTION, **changes}
    assert client.post("/", data=data).status_code == 302
    with client.session_transaction() as session:
        return session["just_submitted"][0]


def handle(service, case_no, reply=REPLY):
    """dispatch.case_handled, as dispatch sends it: intake records 已答复 with the reply."""
    body = {"case_no": case_no, "department": "zhujian", "reply": reply, "summary": reply}
    service.apply_message(make_envelope("dispatch.case_handled", body, "dispatch", service.clock.now()))


def textarea(html, name):
    match = re.search(rf'<textarea[^>]*name="{name}"[^>]*>(.*?)</textarea>', html, re.DOTALL)
    return match.group(1).strip().replace("&#34;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def publish(client, case_no, title="楼顶漏水三个月，住建部门督促物业修复", category="housing", summary=None):
    form = client.get(f"/staff/typical/new?case_no={case_no}").get_data(as_text=True)
    data = {"csrf_token": csrf_token(form), "case_no": case_no, "title": title, "category": category,
            "summary": textarea(form, "summary") if summary is None else summary, "reviewed": "y"}
    return client.post("/staff/typical/new", data=data)


@pytest.fixture
def handled_case(app, intake):
    case_no = submit_case(app.test_client())
    handle(intake, case_no)
    return case_no


@pytest.fixture
def operator(app):
    client = app.test_client()
    login(client, "operator")
    return client


def test_prefilled_summary_has_the_story_without_personal_data(operator, handled_case):
    page = operator.get(f"/staff/typical/new?case_no={handled_case}").get_data(as_text=True)
    summary = textarea(page, "summary")
    assert summary.startswith("【群众诉求】") and "【办理结果】" in summary
    assert "楼顶漏水三个月了" in summary and "修复楼顶防水层" in summary
    for secret in SECRETS:
        assert secret not in summary, secret
    assert summary.count(MASK) == 7  # name ×3, phone ×2, ID, e-mail
    assert "共 7 处" in page
    # the original is shown for the review, what was found marked and only partly shown
    assert "原始诉求" in page and '<mark class="pii">139****5678</mark>' in page
    assert '<mark class="pii">张**</mark>' in page and "楼顶漏水三个月了，物业一直不修" in page
    for secret in SECRETS:
        assert secret not in page, secret


def test_published_case_shows_no_personal_data_on_list_detail_or_feed(app, operator, handled_case):
    response = publish(operator, handled_case)
    assert response.status_code == 302 and response.headers["Location"].endswith("/staff/typical")
    assert "已发布典型案例" in operator.get("/staff/typical").get_data(as_text=True)

    public = app.test_client()  # anonymous
    listing = public.get("/typical").get_data(as_text=True)
    assert "楼顶漏水三个月，住建部门督促物业修复" in listing
    typical_id = re.search(r'href="/typical/(\d+)"', listing).group(1)
    detail = public.get(f"/typical/{typical_id}")
    assert detail.status_code == 200
    detail_text = detail.get_data(as_text=True)
    assert "修复楼顶防水层" in detail_text and "海州区" in detail_text and "住房物业" in detail_text
    feed = public.get("/typical/feed.atom")
    assert feed.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    feed_text = feed.get_data(as_text=True)
    for page in (listing, detail_text, feed_text):
        for secret in SECRETS:
            assert secret not in page, secret
        assert handled_case not in page  # the case number is not published either


def test_atom_feed_is_well_formed_atom_1_0(app, operator, handled_case, intake):
    empty = ET.fromstring(app.test_client().get("/typical/feed.atom").get_data())
    assert empty.tag == f"{ATOM}feed" and empty.find(f"{ATOM}entry") is None
    assert empty.findtext(f"{ATOM}updated")  # required even without entries

    publish(operator, handled_case)
    second = submit_case(app.test_client(), district="210911", category="heating",
                         description="小区暖气不热，室温只有十五度，老人孩子受不了")
    handle(intake, second, reply="供热公司已调整管网压力，室温恢复到20度以上")
    intake.clock.advance(timedelta(hours=2))
    assert publish(operator, second, title="小区暖气不热，供热公司当天调整", category="heating").status_code == 302

    response = app.test_client().get("/typical/feed.atom")
    raw = response.get_data()
    assert raw.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    feed = ET.fromstring(raw)
    assert feed.tag == f"{ATOM}feed"
    assert feed.findtext(f"{ATOM}id").startswith("tag:")
    assert feed.findtext(f"{ATOM}title")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", feed.findtext(f"{ATOM}updated"))
    assert feed.find(f"{ATOM}author/{ATOM}name").text
    self_link = [link for link in feed.findall(f"{ATOM}link") if link.get("rel") == "self"]
    assert len(self_link) == 1 and self_link[0].get("href") == "http://localhost/typical/feed.atom"
    entries = feed.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}title") for e in entries] == ["小区暖气不热，供热公司当天调整",
                                                           "楼顶漏水三个月，住建部门督促物业修复"]
    ids = [e.findtext(f"{ATOM}id") for e in entries]
    assert len(set(ids)) == 2
    for entry in entries:
        assert re.fullmatch(r"tag:[a-z.]+,\d{4}-\d\d-\d\d:typical-case/\d+", entry.findtext(f"{ATOM}id"))
        assert entry.findtext(f"{ATOM}updated") and entry.findtext(f"{ATOM}summary")
        assert entry.find(f"{ATOM}summary").get("type") == "text"
        link = entry.find(f"{ATOM}link")
        assert link.get("rel") == "alternate" and re.fullmatch(r"http://localhost/typical/\d+", link.get("href"))
    # filtered feed: its own id and self link
    heating = ET.fromstring(app.test_client().get("/typical/feed.atom?category=heating").get_data())
    assert len(heating.findall(f"{ATOM}entry")) == 1
    assert heating.findtext(f"{ATOM}id") != feed.findtext(f"{ATOM}id")
    assert [l.get("href") for l in heating.findall(f"{ATOM}link") if l.get("rel") == "self"] == [
        "http://localhost/typical/feed.atom?category=heating"]


def test_personal_data_typed_into_the_summary_is_refused(operator, handled_case, intake):
    summary = f"【群众诉求】市民反映楼顶漏水。\n\n【办理结果】已修复，可联系{NAME}了解，电话 0418-2812345。"
    response = publish(operator, handled_case, summary=summary)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "仍含有个人信息" in page
    assert NAME not in textarea(page, "summary") and "2812345" not in textarea(page, "summary")  # masked for review
    assert "checked" not in re.search(r'<input[^>]*name="reviewed"[^>]*>', page).group(0)  # review again
    title = publish(operator, handled_case, title=f"{NAME}家楼顶漏水修好了")
    assert title.status_code == 400 and "标题仍含有个人信息" in title.get_data(as_text=True)
    with intake.uow() as uow:
        assert uow.session.scalars(select(TypicalCase)).all() == []


def test_form_needs_review_title_and_category(operator, handled_case):
    form = operator.get(f"/staff/typical/new?case_no={handled_case}").get_data(as_text=True)
    response = operator.post("/staff/typical/new", data={"csrf_token": csrf_token(form), "case_no": handled_case,
                                                          "title": "短", "category": "", "summary": "x"})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    for message in ("标题需为5至60个字", "请选择类别", "公开摘要需为20至3000个字", "请核对摘要后勾选确认"):
        assert message in page


def test_only_handled_cases_and_only_once(app, operator, intake, handled_case):
    waiting = submit_case(app.test_client())
    response = operator.get(f"/staff/typical/new?case_no={waiting}")
    assert response.status_code == 409 and "尚未办结" in response.get_data(as_text=True)
    missing = operator.get("/staff/typical/new?case_no=210902-20990101-0001")
    assert missing.status_code == 404 and "未找到诉求" in missing.get_data(as_text=True)
    assert operator.get("/staff/typical/new").status_code == 200  # asks for the number

    assert publish(operator, handled_case).status_code == 302
    again = operator.get(f"/staff/typical/new?case_no={handled_case}").get_data(as_text=True)
    assert "已于" in again and "撤下该典型案例" in again and 'name="summary"' not in again


def test_unpublish_removes_it_from_every_public_page(app, operator, handled_case, intake):
    publish(operator, handled_case)
    with intake.uow() as uow:
        typical_id = uow.session.scalars(select(TypicalCase.id)).one()
    staff_page = operator.get("/staff/typical").get_data(as_text=True)
    response = operator.post(f"/staff/typical/{typical_id}/unpublish", data={"csrf_token": csrf_token(staff_page)})
    assert response.status_code == 302
    assert "已撤下典型案例" in operator.get("/staff/typical").get_data(as_text=True)
    public = app.test_client()
    assert "楼顶漏水三个月" not in public.get("/typical").get_data(as_text=True)
    assert public.get(f"/typical/{typical_id}").status_code == 404
    assert ET.fromstring(public.get("/typical/feed.atom").get_data()).find(f"{ATOM}entry") is None
    with intake.uow() as uow:
        row = uow.session.get(TypicalCase, typical_id)
        assert row.unpublished_at is not None and row.unpublished_by == "operator"
    # can be published again, starting from the text it had
    again = operator.get(f"/staff/typical/new?case_no={handled_case}").get_data(as_text=True)
    assert 'value="楼顶漏水三个月，住建部门督促物业修复"' in again
    # no CSRF token: refused
    assert operator.post(f"/staff/typical/{typical_id}/unpublish").status_code == 400


def test_public_list_filters_and_pages(app, intake):
    with intake.uow() as uow:
        for i in range(23):
            uow.add(TypicalCase(case_no=f"210902-20261101-{i:04d}", title=f"案例{i:02d}号标题",
                                district="210902" if i % 2 else "210911", category="housing" if i < 20 else "water",
                                summary="【群众诉求】某事。【办理结果】已解决。",
                                published_at=intake.clock.now() + timedelta(minutes=i), published_by="operator"))
        uow.commit()
    client = app.test_client()
    first = client.get("/typical").get_data(as_text=True)
    titles = re.findall(r"案例(\d\d)号标题", first)
    assert titles == [f"{i:02d}" for i in range(22, 12, -1)]  # newest first, 10 a page
    assert "第 1 / 3 页" in first and 'rel="next"' in first
    third = client.get("/typical?page=3").get_data(as_text=True)
    assert re.findall(r"案例(\d\d)号标题", third) == ["02", "01", "00"]
    assert re.findall(r"案例(\d\d)号标题", client.get("/typical?page=99").get_data(as_text=True)) == ["02", "01", "00"]
    water = client.get("/typical?category=water&district=210902").get_data(as_text=True)
    assert re.findall(r"案例(\d\d)号标题", water) == ["21"]
    assert "第 1 /" not in water
    assert client.get("/typical?category=nope").status_code == 200  # unknown filter ignored
    page2 = client.get("/typical?district=210911&page=2").get_data(as_text=True)
    assert "district=210911" in page2 and "page=1" in page2  # the pager keeps the filter


def test_typical_pages_are_for_publishers_only(app):
    for username, status in (("fenbo_haizhou", 403), ("bm_zhujian", 403), ("supervisor", 200), ("admin", 200)):
        client = app.test_client()
        login(client, username)
        assert client.get("/staff/typical").status_code == status, username
    anonymous = app.test_client().get("/staff/typical")
    assert anonymous.status_code == 302 and "/login?next=" in anonymous.headers["Location"]


def test_notices_for_a_district_and_for_everyone(app, intake, operator):
    page = operator.get("/staff/notices").get_data(as_text=True)
    bad = operator.post("/staff/notices", data={"csrf_token": csrf_token(page), "title": "", "body": "短", "district": "x"})
    assert bad.status_code == 400
    bad_text = bad.get_data(as_text=True)
    assert "请填写标题" in bad_text and "正文需为10至2000个字" in bad_text and "Not a valid choice" not in bad_text
    for title, district in (("海州区部分小区停水通知", "210902"), ("全市供暖热线延长服务时间", ""),
                            ("细河区道路施工绕行提示", "210911")):
        response = operator.post("/staff/notices", data={"csrf_token": csrf_token(page), "title": title, "district": district,
                                                         "body": f"{title}：请相关居民提前做好准备，谢谢理解。"})
        assert response.status_code == 302
    public = app.test_client()
    everything = public.get("/notices").get_data(as_text=True)
    assert all(t in everything for t in ("海州区部分小区停水通知", "全市供暖热线延长服务时间", "细河区道路施工绕行提示"))
    haizhou = public.get("/notices?district=210902").get_data(as_text=True)
    assert "海州区部分小区停水通知" in haizhou and "全市供暖热线延长服务时间" in haizhou
    assert "细河区道路施工绕行提示" not in haizhou
    # the citizen form shows the newest ones, linked to the notices page
    form = public.get("/").get_data(as_text=True)
    assert "通知公告" in form and "细河区道路施工绕行提示" in form and 'href="/notices' in form
    with intake.uow() as uow:
        notice_id = uow.session.scalars(select(Notice.id).where(Notice.title == "细河区道路施工绕行提示")).one()
    assert operator.post(f"/staff/notices/{notice_id}/withdraw", data={"csrf_token": csrf_token(page)}).status_code == 302
    assert "细河区道路施工绕行提示" not in public.get("/notices").get_data(as_text=True)
    assert "细河区道路施工绕行提示" not in public.get("/").get_data(as_text=True)
    assert operator.post("/staff/notices/999/withdraw", data={"csrf_token": csrf_token(page)}).status_code == 404


def test_citizen_pages_link_to_the_public_pages(app):
    client = app.test_client()
    for path in ("/", "/status", "/typical", "/notices"):
        page = client.get(path).get_data(as_text=True)
        assert 'href="/typical"' in page and 'href="/notices"' in page, path


def test_staff_home_leads_each_role_to_its_first_page(app):
    for username, target in (("operator", "/staff/file"), ("wangge_haizhou", "/staff/file"),
                             ("fenbo_haizhou", "/staff/volume"), ("leader", "/staff/volume")):
        client = app.test_client()
        login(client, username)
        assert client.get("/staff/").headers["Location"].endswith(target), username


def test_open311_still_masks_with_the_shared_rule(app, intake):
    case_no = submit_case(app.test_client())
    record = app.test_client().get(f"/open311/v2/requests/{case_no}.json").get_json()[0]
    for secret in SECRETS:
        assert secret not in record["description"]
    with intake.uow() as uow:
        assert uow.session.get(CitizenRequest, case_no).description == DESCRIPTION  # stored as typed


def test_publishing_and_withdrawing_are_audited(build_service):
    from sqlalchemy import select

    from services.common.models import AuditEntry
    from services.intake import publicity
    intake = build_service("intake")
    notice = publicity.publish_notice(intake, "停水通知", "明日9时至17时海州区部分小区停水", "210902", "operator")
    publicity.withdraw_notice(intake, notice.id, "operator")
    with intake.uow() as uow:
        actions = [(a.actor, a.action) for a in uow.session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == [("operator", "intake.notice_publish"), ("operator", "intake.notice_withdraw")]
