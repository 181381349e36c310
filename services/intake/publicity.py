"""Publicity for citizens: typical cases (典型案例) and notices (通知公告). Decisions: docs/publicity.md.

Staff (受理员, 督办员, admin) publish a handled case as a typical case with a public summary
they reviewed: it is prefilled from the case's description and reply with personal data masked
(``privacy.mask_personal``, the rule Open311 uses) and checked again with the same rule when
published, so neither the prefill nor an edit can put a name, phone, ID number or e-mail on a
public page. Notices go to one district's citizens or to every district.

Public pages: ``/typical`` (list, filters, pages), ``/typical/<id>``, ``/typical/feed.atom``
(Atom 1.0), ``/notices``. Staff pages: under ``/staff/``.

The command functions (``publish_typical_case``, ``unpublish_typical_case``, ``publish_notice``,
``withdraw_notice``) hold the rules; the views only translate forms and answers.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from xml.etree import ElementTree as ET

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, or_, select
from wtforms import BooleanField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import AnyOf, DataRequired, Length

from services.common import audit
from services.common.models import TimelineEntry
from services.common.reference import CATEGORIES, DISTRICTS
from services.common.web.app import CHINA_TZ
from services.common.web.auth import roles_required

from .filing import FILING_ROLES
from .callback import CALLBACK_ROLES
from .models import CitizenRequest, Notice, TypicalCase
from .privacy import MASK, mark_personal, mask_personal

bp = Blueprint("publicity", __name__)

PUBLISHER_ROLES = ("intake_operator", "supervisor")  # and admin (roles_required lets admin in)
VOLUME_ROLES = ("dispatcher", "supervisor", "intake_operator", "leader")  # services/intake/stats.py
PAGE_SIZE = 10  # public lists
STAFF_PAGE_SIZE = 20
FEED_SIZE = 50
RECENT_HANDLED = 10  # handled cases offered on the staff page
# tag: URIs (RFC 4151) of the Atom feed: never change once the feed is public, or every
# feed reader shows every entry again.
FEED_AUTHORITY = "fzt.fuxin.gov.cn"
FEED_EPOCH = datetime(2026, 11, 28, tzinfo=CHINA_TZ)  # "updated" of a feed without entries
PUBLISHER = "阜新市“阜政通”诉求服务平台"
ATOM = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
HANDLED = "handled"
PUBLISHABLE = (HANDLED, "closed")  # replied (being rated) or closed after the callback
REPLY_TITLE = "已答复"  # the public timeline entry that carries the department's reply (intake.bpmn)
STATUS_NAMES = {"submitted": "待分拨", "assigned": "办理中", "handled": "已答复", "closed": "已办结", "rejected": "不予受理",
                "merged": "已合并办理"}
PII_LEFT = "仍含有个人信息（姓名、电话、证件号或邮箱），已替换为“＊＊＊”，请核对后再发布"


class PublicityError(Exception):
    """A rule said no; ``field`` names the form field the message belongs to (or None)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message, self.field = message, field


def _service():
    return current_app.extensions["fzt"]


def _actor() -> str:
    return current_user.username


# -- commands -------------------------------------------------------------------------------

def case_reply(session, case_no: str) -> str:
    """The department's reply as the citizen saw it (the latest public 已办结 entry), or ""."""
    entry = session.scalars(select(TimelineEntry).where(
        TimelineEntry.case_no == case_no, TimelineEntry.public.is_(True), TimelineEntry.title == REPLY_TITLE)
        .order_by(TimelineEntry.at.desc(), TimelineEntry.id.desc()).limit(1)).first()
    return entry.detail if entry is not None else ""


def draft_summary(case: CitizenRequest, reply: str) -> str:
    """The summary a member of staff starts from: description and reply, personal data masked."""
    def masked(text):
        return mask_personal((text or "").strip(), name=case.name, phone=case.phone)

    return f"【群众诉求】{masked(case.description)}\n\n【办理结果】{masked(reply)}"


def active_typical(session, case_no: str):
    return session.scalars(select(TypicalCase).where(
        TypicalCase.case_no == case_no, TypicalCase.unpublished_at.is_(None))).first()


def publish_typical_case(service, case_no: str, title: str, category: str, summary: str,
                         actor: str) -> TypicalCase:
    """Publish handled case ``case_no``; PublicityError if it cannot be, or if the title or
    summary still holds personal data by the masking rule."""
    title, summary = (title or "").strip(), (summary or "").strip()
    if category not in CATEGORIES:
        raise PublicityError("请选择类别", "category")
    with service.uow() as uow:
        case = uow.session.get(CitizenRequest, case_no)
        if case is None:
            raise PublicityError(f"未找到诉求 {case_no}", "case_no")
        if case.status not in PUBLISHABLE:
            raise PublicityError("该诉求尚未办结，办结后才能发布为典型案例", "case_no")
        if active_typical(uow.session, case_no) is not None:
            raise PublicityError("该诉求已发布为典型案例，请勿重复发布", "case_no")
        for field, text in (("title", title), ("summary", summary)):
            if mask_personal(text, name=case.name, phone=case.phone) != text:
                raise PublicityError(("标题" if field == "title" else "公开摘要") + PII_LEFT, field)
        row = TypicalCase(case_no=case_no, title=title, district=case.district, category=category,
                          summary=summary, published_at=service.clock.now(), published_by=actor)
        uow.add(row)
        audit.record(uow, actor, "intake.typical_publish", case_no, category=category)
        uow.commit()
        return row


def unpublish_typical_case(service, typical_id: int, actor: str):
    """Take a typical case off the public pages (the row stays). None if there is no such case;
    an already unpublished one is returned unchanged."""
    with service.uow() as uow:
        row = uow.session.get(TypicalCase, typical_id)
        if row is not None and row.unpublished_at is None:
            row.unpublished_at, row.unpublished_by = service.clock.now(), actor
            audit.record(uow, actor, "intake.typical_unpublish", row.case_no, typical_id=typical_id)
            uow.commit()
        return row


def publish_notice(service, title: str, body: str, district: str, actor: str) -> Notice:
    if district and district not in DISTRICTS:
        raise PublicityError("未知的县区", "district")
    with service.uow() as uow:
        row = Notice(title=title.strip(), body=body.strip(), district=district or "",
                     published_at=service.clock.now(), published_by=actor)
        uow.add(row)
        audit.record(uow, actor, "intake.notice_publish", None, district=district or "all")
        uow.commit()
        return row


def withdraw_notice(service, notice_id: int, actor: str):
    with service.uow() as uow:
        row = uow.session.get(Notice, notice_id)
        if row is not None and row.withdrawn_at is None:
            row.withdrawn_at, row.withdrawn_by = service.clock.now(), actor
            audit.record(uow, actor, "intake.notice_withdraw", None, notice_id=notice_id)
            uow.commit()
        return row


# -- reading --------------------------------------------------------------------------------

@dataclass
class Page:
    items: list
    number: int
    pages: int
    total: int


def paginate(session, query, number: int, size: int) -> Page:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    pages = max(1, math.ceil(total / size))
    number = min(max(1, number), pages)
    items = session.scalars(query.limit(size).offset((number - 1) * size)).all()
    return Page(items, number, pages, total)


def public_typical_query(district: str = "", category: str = ""):
    query = select(TypicalCase).where(TypicalCase.unpublished_at.is_(None))
    if district:
        query = query.where(TypicalCase.district == district)
    if category:
        query = query.where(TypicalCase.category == category)
    return query.order_by(TypicalCase.published_at.desc(), TypicalCase.id.desc())


def public_notice_query(district: str = ""):
    query = select(Notice).where(Notice.withdrawn_at.is_(None))
    if district:
        query = query.where(or_(Notice.district == district, Notice.district == ""))
    return query.order_by(Notice.published_at.desc(), Notice.id.desc())


def latest_notices(limit: int = 3) -> list[Notice]:
    """For the citizen form: the newest notices (a known outage saves a citizen a report)."""
    with _service().uow() as uow:
        return uow.session.scalars(public_notice_query().limit(limit)).all()


def _choice(name: str, allowed) -> str:
    value = (request.args.get(name) or "").strip()
    return value if value in allowed else ""


def _page_number() -> int:
    return request.args.get("page", 1, type=int) or 1


def page_url(number: int) -> str:
    """This page's URL (same filters) on page ``number``."""
    return url_for(request.endpoint, **{**(request.view_args or {}), **request.args.to_dict(), "page": number})


SECTION = re.compile(r"【([^【】\n]{1,12})】")


@bp.app_template_filter("story_sections")
def story_sections(text: str) -> list[tuple[str | None, str]]:
    """A summary's parts: "【群众诉求】…【办理结果】…" → [("群众诉求", "…"), ("办理结果", "…")];
    text before the first heading (or without any) has the heading None. Empty parts are left out."""
    parts = SECTION.split(text or "")
    sections = [(None, parts[0].strip())] + [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts), 2)]
    return [(heading, body) for heading, body in sections if body]


@bp.app_template_filter("story_excerpt")
def story_excerpt(text: str, size: int = 80) -> str:
    """The first part of a summary (what was asked), on one line, cut at ``size`` characters."""
    sections = story_sections(text)
    return _excerpt(sections[0][1] if sections else "", size)


@bp.app_context_processor
def _template_helpers():
    return {"page_url": page_url, "latest_notices": latest_notices, "intake_staff_links": staff_links,
            "MASK": MASK}


def staff_links() -> list[tuple[str, str]]:
    """(endpoint, title) of the intake staff pages the current user may open."""
    if not current_user.is_authenticated:
        return []
    role = current_user.role
    links = []
    if role in FILING_ROLES or role == "admin":
        links.append(("filing.file_request", "代为反映"))
    if role in PUBLISHER_ROLES or role == "admin":
        links += [("publicity.staff_typical", "典型案例"), ("publicity.staff_notices", "通知公告")]
    if role in VOLUME_ROLES or role == "admin":
        links.append(("stats.volume", "受理量统计"))
    if role in CALLBACK_ROLES or role == "admin":
        links.append(("callback.work_list", "回访"))
    return links


# -- public pages ---------------------------------------------------------------------------

@bp.get("/typical")
def typical_list():
    district, category = _choice("district", DISTRICTS), _choice("category", CATEGORIES)
    with _service().uow() as uow:
        page = paginate(uow.session, public_typical_query(district, category), _page_number(), PAGE_SIZE)
    return render_template("intake/typical_list.html", page=page, district=district, category=category)


@bp.get("/typical/<int:typical_id>")
def typical_detail(typical_id):
    with _service().uow() as uow:
        row = uow.session.get(TypicalCase, typical_id)
        if row is None or row.unpublished_at is not None:
            abort(404)
        related = uow.session.scalars(public_typical_query(category=row.category)
                                      .where(TypicalCase.id != row.id).limit(3)).all()
    return render_template("intake/typical_detail.html", case=row, related=related)


@bp.get("/typical/feed.atom")
def typical_feed():
    district, category = _choice("district", DISTRICTS), _choice("category", CATEGORIES)
    with _service().uow() as uow:
        rows = uow.session.scalars(public_typical_query(district, category).limit(FEED_SIZE)).all()
        # Updated when an entry comes or goes (an unpublished case leaves the feed).
        changed = select(func.max(TypicalCase.published_at), func.max(TypicalCase.unpublished_at))
        if district:
            changed = changed.where(TypicalCase.district == district)
        if category:
            changed = changed.where(TypicalCase.category == category)
        latest = [t for t in uow.session.execute(changed).one() if t is not None]
    updated = max(latest, default=FEED_EPOCH)
    body = atom_feed(rows, updated, district, category)
    return Response(body, content_type="application/atom+xml; charset=utf-8")


def _w3(value: datetime) -> str:
    return value.astimezone(CHINA_TZ).isoformat(timespec="seconds")


def entry_id(row: TypicalCase) -> str:
    return f"tag:{FEED_AUTHORITY},{row.published_at.astimezone(CHINA_TZ):%Y-%m-%d}:typical-case/{row.id}"


def _excerpt(text: str, size: int = 140) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= size else text[:size - 1] + "…"


def atom_feed(rows, updated: datetime, district: str, category: str) -> bytes:
    """Atom 1.0 (RFC 4287): feed id/title/updated/author/link rel=self, one entry per case."""
    ET.register_namespace("", ATOM)

    def add(parent, tag, text=None, **attributes):
        element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", {k: v for k, v in attributes.items() if v})
        if text is not None:
            element.text = text
        return element

    scope = "".join(f"/{name}={value}" for name, value in (("district", district), ("category", category)) if value)
    title = "阜政通 · 典型案例" + "".join(f" · {names[value]}" for names, value in
                                         ((DISTRICTS, district), (CATEGORIES, category)) if value)
    filters = {k: v for k, v in (("district", district), ("category", category)) if v}
    feed = ET.Element(f"{{{ATOM}}}feed", {XML_LANG: "zh-CN"})
    add(feed, "id", f"tag:{FEED_AUTHORITY},2026:typical-cases{scope}")
    add(feed, "title", title)
    add(feed, "subtitle", "阜新市诉求办理典型案例：群众反映了什么，部门怎样解决的。")
    add(feed, "updated", _w3(updated))
    author = add(feed, "author")
    add(author, "name", PUBLISHER)
    add(feed, "link", rel="self", type="application/atom+xml",
        href=url_for("publicity.typical_feed", _external=True, **filters))
    add(feed, "link", rel="alternate", type="text/html",
        href=url_for("publicity.typical_list", _external=True, **filters))
    for row in rows:
        entry = add(feed, "entry")
        add(entry, "id", entry_id(row))
        add(entry, "title", row.title)
        add(entry, "updated", _w3(row.published_at))
        add(entry, "published", _w3(row.published_at))
        add(entry, "link", rel="alternate", type="text/html",
            href=url_for("publicity.typical_detail", typical_id=row.id, _external=True))
        add(entry, "category", term=row.category, label=CATEGORIES.get(row.category, row.category))
        add(entry, "category", term=row.district, label=DISTRICTS.get(row.district, row.district),
            scheme="urn:fzt:district")
        add(entry, "summary", story_excerpt(row.summary, 140), type="text")
        add(entry, "content", row.summary, type="text")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="utf-8", xml_declaration=False)


@bp.get("/notices")
def notices():
    district = _choice("district", DISTRICTS)
    with _service().uow() as uow:
        page = paginate(uow.session, public_notice_query(district), _page_number(), PAGE_SIZE)
    return render_template("intake/notices.html", page=page, district=district)


# -- staff pages ----------------------------------------------------------------------------

def _strip(value):
    return value.strip() if isinstance(value, str) else value


class TypicalForm(FlaskForm):
    case_no = HiddenField(validators=[DataRequired("请先输入诉求编号")])
    title = StringField("标题", filters=[_strip], validators=[
        DataRequired("请填写标题"), Length(min=5, max=60, message="标题需为5至60个字")])
    category = SelectField("类别", choices=[("", "请选择类别"), *CATEGORIES.items()], validate_choice=False,
                           validators=[DataRequired("请选择类别"), AnyOf(list(CATEGORIES), "请从列表中选择类别")])
    summary = TextAreaField("公开摘要", filters=[_strip], validators=[
        DataRequired("请填写公开摘要"), Length(min=20, max=3000, message="公开摘要需为20至3000个字")])
    reviewed = BooleanField("我已逐字核对：摘要中没有姓名、电话、证件号、住址门牌等个人信息",
                            validators=[DataRequired("请核对摘要后勾选确认")])


class NoticeForm(FlaskForm):
    title = StringField("标题", filters=[_strip], validators=[
        DataRequired("请填写标题"), Length(min=4, max=60, message="标题需为4至60个字")])
    district = SelectField("发给", choices=[("", "全市（所有县区）"), *DISTRICTS.items()], validate_choice=False,
                           validators=[AnyOf(["", *DISTRICTS], "请从列表中选择县区")])
    body = TextAreaField("正文", filters=[_strip], validators=[
        DataRequired("请填写正文"), Length(min=10, max=2000, message="正文需为10至2000个字")])


@bp.get("/staff/")
@roles_required(*PUBLISHER_ROLES, *VOLUME_ROLES, *FILING_ROLES)
def staff_home():
    return redirect(url_for(staff_links()[0][0]))


@bp.get("/staff/typical")
@roles_required(*PUBLISHER_ROLES)
def staff_typical():
    with _service().uow() as uow:
        query = select(TypicalCase).order_by(TypicalCase.published_at.desc(), TypicalCase.id.desc())
        page = paginate(uow.session, query, _page_number(), STAFF_PAGE_SIZE)
        published = select(TypicalCase.case_no).where(TypicalCase.unpublished_at.is_(None))
        handled = uow.session.scalars(select(CitizenRequest).where(
            CitizenRequest.status.in_(PUBLISHABLE), CitizenRequest.case_no.not_in(published))
            .order_by(CitizenRequest.created_at.desc()).limit(RECENT_HANDLED)).all()
        recent = [(c, mask_personal(c.description, name=c.name, phone=c.phone)) for c in handled]
    return render_template("intake/staff_typical.html", page=page, recent=recent)


@bp.route("/staff/typical/new", methods=["GET", "POST"])
@roles_required(*PUBLISHER_ROLES)
def new_typical():
    service = _service()
    case_no = (request.values.get("case_no") or "").strip()
    if not case_no:
        status = 400 if request.method == "POST" else 200
        return _lookup_page(case_no, "请输入诉求编号" if request.method == "POST" else None, status)
    with service.uow() as uow:
        case = uow.session.get(CitizenRequest, case_no)
        if case is None:
            return _lookup_page(case_no, f"未找到诉求 {case_no}，请核对诉求编号", 404)
        reply = case_reply(uow.session, case_no)
        existing = active_typical(uow.session, case_no)
        previous = uow.session.scalars(select(TypicalCase).where(TypicalCase.case_no == case_no)
                                       .order_by(TypicalCase.id.desc()).limit(1)).first()
    if case.status not in PUBLISHABLE:
        name = STATUS_NAMES.get(case.status, case.status)
        return _lookup_page(case_no, f"诉求 {case_no} 尚未办结（当前：{name}），办结后才能发布为典型案例", 409)
    form = TypicalForm()
    if request.method == "GET":
        form.case_no.data = case_no
        form.category.data = case.category or ""
        form.summary.data = draft_summary(case, reply)
        if previous is not None:  # published before and taken down: start from that text
            form.title.data, form.category.data, form.summary.data = previous.title, previous.category, previous.summary
    elif existing is None and form.validate_on_submit():
        try:
            row = publish_typical_case(service, case_no, form.title.data, form.category.data,
                                       form.summary.data, _actor())
        except PublicityError as err:
            _form_error(form, err, case)
        else:
            flash(f"已发布典型案例《{row.title}》", "success")
            return redirect(url_for("publicity.staff_typical"))
    masked = form.summary.data.count(MASK) if form.summary.data else 0
    return render_template("intake/typical_new.html", form=form, case=case, reply=reply, existing=existing,
                           masked=masked, marked_description=mark_personal(case.description, case.name, case.phone),
                           marked_reply=mark_personal(reply, case.name, case.phone)), 400 if form.errors else 200


def _form_error(form, err: PublicityError, case: CitizenRequest) -> None:
    field = getattr(form, err.field or "", None)
    if err.field in ("title", "summary"):  # show what the rule would hide, and ask again
        field.data = mask_personal(field.data, name=case.name, phone=case.phone)
        form.reviewed.data = False
    if field is None or err.field == "case_no":
        form.form_errors.append(err.message)
    else:
        field.errors = [*field.errors, err.message]


def _lookup_page(case_no, error, status):
    return render_template("intake/typical_new.html", form=None, case=None, lookup_case_no=case_no,
                           lookup_error=error), status


@bp.post("/staff/typical/<int:typical_id>/unpublish")
@roles_required(*PUBLISHER_ROLES)
def unpublish_typical(typical_id):
    row = unpublish_typical_case(_service(), typical_id, _actor())
    if row is None:
        abort(404)
    flash(f"已撤下典型案例《{row.title}》，公众页面和订阅中不再显示", "success")
    return redirect(url_for("publicity.staff_typical", page=request.form.get("page", type=int)))


@bp.route("/staff/notices", methods=["GET", "POST"])
@roles_required(*PUBLISHER_ROLES)
def staff_notices():
    service = _service()
    form = NoticeForm()
    if form.validate_on_submit():
        row = publish_notice(service, form.title.data, form.body.data, form.district.data, _actor())
        where = DISTRICTS.get(row.district, "全市")
        flash(f"已发布通知公告《{row.title}》（{where}）", "success")
        return redirect(url_for("publicity.staff_notices"))
    with service.uow() as uow:
        query = select(Notice).order_by(Notice.published_at.desc(), Notice.id.desc())
        page = paginate(uow.session, query, _page_number(), STAFF_PAGE_SIZE)
    return render_template("intake/staff_notices.html", form=form, page=page), 400 if form.errors else 200


@bp.post("/staff/notices/<int:notice_id>/withdraw")
@roles_required(*PUBLISHER_ROLES)
def withdraw_notice_view(notice_id):
    row = withdraw_notice(_service(), notice_id, _actor())
    if row is None:
        abort(404)
    flash(f"已撤下通知公告《{row.title}》", "success")
    return redirect(url_for("publicity.staff_notices", page=request.form.get("page", type=int)))

