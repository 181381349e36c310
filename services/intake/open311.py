"""Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2) on intake's cases.

Mounted at ``/intake/open311/v2``; every resource in XML (the spec's required format) and
JSON (its Spark convention), chosen by the extension. One service per request category;
POSTing a request goes through ``RequestSchema`` and ``submit_request`` like every other
channel (channel ``open311``). What is read back is public: no name, phone, e-mail or
tracking code, and phone numbers and the requester's name are masked in the texts shown.
Decisions and mapping: docs/open311.md.
"""
from __future__ import annotations

import hmac
import json
import logging
import math
import re
from datetime import datetime, timedelta, timezone
from xml.etree import ElementTree as ET

from flask import Blueprint, Response, current_app, request
from flask_limiter.errors import RateLimitExceeded
from marshmallow import ValidationError, validate
from sqlalchemy import and_, exists, or_, select
from werkzeug.exceptions import HTTPException

from services.common.models import TimelineEntry, WorkflowInstance
from services.common.reference import CATEGORIES, DEPARTMENTS, DISTRICTS
from services.common.web.app import csrf_exempt
from services.common.web.ratelimit import SUBMIT, limited, refusal_message, replayed

from . import idempotency
from .models import CitizenRequest
from .privacy import mask_personal
from .requests import RequestSchema

bp = Blueprint("open311", __name__, url_prefix="/open311/v2")
log = logging.getLogger(__name__)

FORMAT = "<any(json, xml):fmt>"
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-11-25T00:00:00+08:00"  # change when what this API offers changes
CONTACT = "阜新市“阜政通”诉求服务平台，政务服务便民热线 12345"
KEY_SERVICE = "提交诉求需要 API 密钥（api_key），请通过 12345 热线联系“阜政通”平台运维申请；查询无需密钥"
DEV_API_KEY = "fzt-open311-dev"  # accepted only outside production and only if no key is configured
CHANNEL = "open311"
CHINA_TZ = timezone(timedelta(hours=8))
MAX_RESULTS = 1000  # the spec's default query limit
MAX_SPAN = timedelta(days=90)  # the spec's default and largest date range
DEFAULT_AGENCY = "阜新市“阜政通”诉求服务平台"
SERVICE_NOTICE = "诉求已受理，编号 {case_no}。我们会在1个工作日内交办到负责的部门，并全程跟踪办理进度。"
UNCATEGORISED = "other"  # requests sent without a category are listed under 其他
CLOSED_STATUSES = ("handled", "closed", "rejected")

# The list element's child name, per the spec's XML (JSON is the same tree, Spark convention).
ITEMS = {"services": "service", "service_requests": "request", "errors": "error",
         "attributes": "attribute", "values": "value", "endpoints": "endpoint", "formats": "format"}
XML_CONTENT_TYPE = "text/xml; charset=utf-8"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# What citizens and app makers read in the service list (group, keywords, description).
SERVICE_INFO = {
    "housing": ("城乡建设", "物业,维修,漏水,电梯,小区,房屋",
                "物业服务、房屋维修、电梯和小区公共设施等问题"),
    "heating": ("公用事业", "暖气,供热,不热,停暖,采暖费", "室温不达标、停暖、采暖收费等供暖问题"),
    "water": ("公用事业", "停水,水压,水质,下水道,排水,管道",
              "停水、水压水质、下水道堵塞、排水不畅等问题"),
    "city_management": ("城市管理", "占道经营,违章搭建,垃圾,路灯,井盖",
                        "占道经营、违章搭建、垃圾清运、路灯井盖等市容问题"),
    "environment": ("城市管理", "噪声,油烟,扬尘,污染,异味", "噪声、油烟、扬尘、水体和空气污染等环境问题"),
    "traffic": ("城市管理", "公交,道路,停车,信号灯,出租车", "公交出租、道路破损、停车和交通信号等出行问题"),
    "labour": ("民生保障", "欠薪,工资,社保,养老保险,就业", "拖欠工资、社会保险、就业服务等劳动保障问题"),
    "market": ("市场监管", "消费,投诉,价格,食品安全,假冒", "消费投诉、价格、食品安全、假冒伪劣等问题"),
    "public_security": ("平安建设", "治安,扰民,安全隐患,纠纷",
                        "治安秩序、安全隐患、邻里纠纷等问题（紧急情况请拨打110）"),
    "education": ("民生保障", "学校,入学,收费,校车", "入学、学校收费、校园安全等教育问题"),
    "health": ("民生保障", "医院,诊所,医保报销,疫苗", "医疗服务、医保报销、疫苗接种等卫生健康问题"),
    "civil_affairs": ("民生保障", "低保,救助,养老,残疾人,殡葬", "低保、临时救助、养老服务、残疾人帮扶等民政问题"),
    "other": ("其他", "咨询,建议,其他", "不属于以上类别的咨询、建议和求助"),
}
CONTACT_NOTE = "请同时提供姓名（first_name/last_name 或 name）和联系电话（phone），以便办理部门联系您。"

# Open311 parameter names for RequestSchema's fields, in error descriptions.
PARAMS = {"district": "attribute[district]", "name": "first_name/last_name", "phone": "phone",
          "description": "description", "location": "address_string", "category": "service_code"}


class Open311Error(Exception):
    def __init__(self, status: int, *descriptions: str):
        super().__init__(status, descriptions)
        self.status, self.descriptions = status, descriptions


def _service():
    return current_app.extensions["fzt"]


# -- resources ------------------------------------------------------------------------------

@bp.get(f"/discovery.{FORMAT}")
def discovery(fmt):
    settings = _service().settings
    return _respond(fmt, "discovery", {
        "changeset": CHANGESET, "contact": CONTACT, "key_service": KEY_SERVICE,
        "endpoints": [{
            "specification": SPECIFICATION, "url": _endpoint_url(), "changeset": CHANGESET,
            "type": "production" if settings.production else "test",
            "formats": ["text/xml", "application/json"],
        }],
    })


@bp.get(f"/services.{FORMAT}")
def services(fmt):
    return _respond(fmt, "services", [_service_entry(code) for code in CATEGORIES])


@bp.get(f"/services/<service_code>.{FORMAT}")
def service_definition(service_code, fmt):
    if service_code not in CATEGORIES:
        raise Open311Error(404, f"未找到服务类型 service_code={service_code[:60]}")
    return _respond(fmt, "service_definition", {
        "service_code": service_code,
        "attributes": [{
            "variable": True, "code": "district", "datatype": "singlevaluelist", "required": True,
            "datatype_description": "从列表中选择一个县区（key 为行政区划代码）", "order": 1,
            "description": "诉求发生地所在县区",
            "values": [{"key": code, "name": name} for code, name in DISTRICTS.items()],
        }],
    })


@bp.post(f"/requests.{FORMAT}")
@csrf_exempt  # no session: the api_key is the credential
@limited(SUBMIT, replay=lambda: idempotency.seen(_service(), idempotency.OPEN311,
                                                request.headers.get(idempotency.HEADER)))
def create_request(fmt):
    service = _service()
    once = request.headers.get(idempotency.HEADER)  # an extension of ours (docs/open311.md)
    if once is not None and not idempotency.valid_key(once):
        raise Open311Error(400, idempotency.KEY_ERROR)
    form = request.form
    key = (form.get("api_key") or request.args.get("api_key") or "").strip()
    if not key:
        raise Open311Error(403, "缺少 api_key，无法提交诉求")
    if not _key_accepted(service.settings, key):
        raise Open311Error(403, "api_key 无效，无法提交诉求")
    code = _field(form, "service_code")
    if not code:
        raise Open311Error(400, "缺少 service_code")
    if code not in CATEGORIES:
        raise Open311Error(404, f"未找到服务类型 service_code={code[:60]}")

    problems = []
    latitude, longitude, location = _location(form, problems)
    media_url = _field(form, "media_url") or None
    if media_url and not _is_web_url(media_url):
        problems.append("media_url：须为 http(s) 网址，且不超过2000个字符")
    values = {"district": _field(form, "attribute[district]"), "name": _requester_name(form),
              "phone": _field(form, "phone"), "description": _field(form, "description"),
              "location": location, "category": code, "channel": CHANNEL}
    try:
        data = RequestSchema().load({k: v for k, v in values.items() if v})
    except ValidationError as err:
        data = None
        for field, messages in err.messages.items():
            for message in messages if isinstance(messages, list) else [messages]:
                problems.append(f"{PARAMS.get(field, field)}：{message}")
    if problems:
        raise Open311Error(400, *problems)

    try:
        created, again = idempotency.submit_once(service, idempotency.OPEN311, once, data, latitude=latitude,
                                                 longitude=longitude, media_url=media_url)
    except idempotency.KeyReused as err:
        raise Open311Error(422, str(err)) from None
    if again:
        replayed()
    return _respond(fmt, "service_requests", [{
        "service_request_id": created.case_no,
        "service_notice": SERVICE_NOTICE.format(case_no=created.case_no),
        "account_id": None,
    }])


@bp.get(f"/requests.{FORMAT}")
def list_requests(fmt):
    service = _service()
    args = request.args
    query = select(CitizenRequest)
    ids = _split(args.get("service_request_id"))
    if ids:  # "This overrides all other arguments."
        query = query.where(CitizenRequest.case_no.in_(ids[:MAX_RESULTS]))
    else:
        codes = _split(args.get("service_code"))
        if codes:
            wanted = CitizenRequest.category.in_(codes)
            query = query.where(or_(wanted, CitizenRequest.category == "") if UNCATEGORISED in codes else wanted)
        statuses = set(_split(args.get("status")))
        if statuses - {"open", "closed"}:
            raise Open311Error(400, "status 只能是 open 或 closed（可用逗号分隔）")
        if statuses == {"open"}:
            query = query.where(~_closed())
        elif statuses == {"closed"}:
            query = query.where(_closed())
        start, end = _date_range(args, service.clock.now())
        query = query.where(CitizenRequest.created_at >= start, CitizenRequest.created_at <= end)
    query = query.order_by(CitizenRequest.created_at.desc(), CitizenRequest.case_no.desc()).limit(MAX_RESULTS)
    with service.uow() as uow:
        rows = uow.session.scalars(query).all()
        return _respond(fmt, "service_requests", _public_requests(uow.session, rows))


@bp.get(f"/requests/<case_no>.{FORMAT}")
def get_request(case_no, fmt):
    with _service().uow() as uow:
        found = uow.session.get(CitizenRequest, case_no)
        if found is None:
            raise Open311Error(404, f"未找到诉求 service_request_id={case_no[:60]}")
        return _respond(fmt, "service_requests", _public_requests(uow.session, [found]))


@bp.get(f"/tokens/<token>.{FORMAT}")
def token_lookup(token, fmt):
    # Every service is "realtime": POST returns the id, and the token of a request is its id.
    with _service().uow() as uow:
        if uow.session.get(CitizenRequest, token) is None:
            raise Open311Error(404, f"未找到 token={token[:60]}")
    return _respond(fmt, "service_requests", [{"service_request_id": token, "token": token}])


@bp.route("/<path:rest>", methods=["GET", "POST"])
@csrf_exempt
def unknown(rest):
    raise Open311Error(404, "未知的资源；格式请用 .xml 或 .json，见 discovery.xml")


@bp.errorhandler(Open311Error)
def _open311_error(err):
    return _errors(err.status, *err.descriptions)


@bp.errorhandler(RateLimitExceeded)
def _rate_limited(err):
    return _errors(429, refusal_message(err))  # Retry-After: added by the limiter


@bp.errorhandler(HTTPException)
def _http_error(err):
    return _errors(err.code or 400, err.description or err.name)


@bp.errorhandler(Exception)
def _unexpected(err):
    log.exception("open311: unhandled error on %s", request.path)
    return _errors(500, "系统繁忙，请稍后再试")


# -- reading cases ----------------------------------------------------------------------------

def _closed():
    """Closed: handled, or intake's process has ended (it ends on 办结 and on 不予受理)."""
    return or_(CitizenRequest.status.in_(CLOSED_STATUSES), exists().where(and_(
        WorkflowInstance.case_no == CitizenRequest.case_no, WorkflowInstance.process_id == "intake",
        WorkflowInstance.status == "complete")))


def _public_requests(session, rows) -> list[dict]:
    """The spec's request records, with only what may be public."""
    if not rows:
        return []
    case_nos = [r.case_no for r in rows]
    latest, agency = {}, {}
    departments = set(DEPARTMENTS.values())
    for entry in session.scalars(select(TimelineEntry).where(
            TimelineEntry.case_no.in_(case_nos), TimelineEntry.public.is_(True))
            .order_by(TimelineEntry.at, TimelineEntry.id)):
        latest[entry.case_no] = entry
        if entry.detail in departments:  # 已交办 / 已受理 name the department
            agency[entry.case_no] = entry.detail
    complete = set(session.scalars(select(WorkflowInstance.case_no).where(
        WorkflowInstance.case_no.in_(case_nos), WorkflowInstance.process_id == "intake",
        WorkflowInstance.status == "complete")))
    records = []
    for row in rows:
        code = row.category or UNCATEGORISED
        last = latest.get(row.case_no)
        notes = None
        if last is not None:
            notes = f"{last.title}：{last.detail}" if last.detail else last.title
        updated = max(row.created_at, last.at) if last is not None else row.created_at
        records.append({
            "service_request_id": row.case_no,
            "status": "closed" if row.status in CLOSED_STATUSES or row.case_no in complete else "open",
            "status_notes": _masked(notes, row),
            "service_name": CATEGORIES.get(code, code),
            "service_code": code,
            "description": _masked(row.description, row),
            "agency_responsible": agency.get(row.case_no, DEFAULT_AGENCY),
            "service_notice": None,
            "requested_datetime": _w3(row.created_at),
            "updated_datetime": _w3(updated),
            "expected_datetime": None,
            "address": _masked(row.location, row) if row.location and row.location != _coordinates_label(
                row.latitude, row.longitude) else None,
            "address_id": None,
            "zipcode": None,
            "lat": row.latitude,
            "long": row.longitude,
            "media_url": row.media_url,
        })
    return records


def _masked(text, row):
    """Public text without the requester's name and phone, nor any phone, ID or e-mail."""
    return mask_personal(text, name=row.name, phone=row.phone)


def _w3(value: datetime) -> str:
    return value.astimezone(CHINA_TZ).isoformat(timespec="seconds")


def _date_range(args, now):
    start, end = _datetime_arg(args, "start_date"), _datetime_arg(args, "end_date")
    if start is None and end is None:
        end = now
    if start is None:
        start = end - MAX_SPAN
    if end is None:
        end = start + MAX_SPAN
    if start > end:
        raise Open311Error(400, "start_date 不能晚于 end_date")
    if end - start > MAX_SPAN:
        raise Open311Error(400, "start_date 与 end_date 相隔不能超过90天")
    return start, end


def _datetime_arg(args, name):
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    # An unencoded "+08:00" arrives as " 08:00".
    raw = re.sub(r" (\d{2}:?\d{2})$", r"+\1", raw)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise Open311Error(400, f"{name} 须为 W3C 日期时间，例如 2026-11-01T00:00:00+08:00") from None
    return value if value.tzinfo else value.replace(tzinfo=CHINA_TZ)


def _split(raw) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


# -- taking a request ---------------------------------------------------------------------

def _key_accepted(settings, key: str) -> bool:
    keys = settings.open311_api_keys or (() if settings.production else (DEV_API_KEY,))
    given = key.encode()
    return any(hmac.compare_digest(given, k.encode()) for k in keys)


def _field(form, name) -> str:
    return (form.get(name) or "").strip()


def _requester_name(form) -> str:
    full = _field(form, "name")
    if full:
        return full
    first, last = _field(form, "first_name"), _field(form, "last_name")
    if re.search(r"[\u3400-\u9fff]", first + last):
        return last + first  # 姓在前
    return " ".join(part for part in (first, last) if part)


def _location(form, problems):
    """(lat, long, location text): lat & long, or address_string, or both."""
    raw_lat, raw_long, address = _field(form, "lat"), _field(form, "long"), _field(form, "address_string")
    latitude = longitude = None
    if raw_lat or raw_long:
        try:
            latitude, longitude = float(raw_lat), float(raw_long)
        except ValueError:
            problems.append("lat/long：须同时提供 WGS84 纬度和经度（十进制数）")
        else:
            if not (math.isfinite(latitude) and math.isfinite(longitude)
                    and -90 <= latitude <= 90 and -180 <= longitude <= 180):
                problems.append("lat/long：纬度须在 -90 至 90、经度须在 -180 至 180 之间")
                latitude = longitude = None
    elif not address:
        message = "请提供位置：lat 和 long，或 address_string"
        if _field(form, "address_id"):
            message += "（本平台不支持 address_id）"
        problems.append(message)
    return latitude, longitude, address or _coordinates_label(latitude, longitude) or ""


def _coordinates_label(latitude, longitude) -> str | None:
    """The location staff read when only a point was sent."""
    if latitude is None or longitude is None:
        return None
    return f"经纬度 {latitude:.6f},{longitude:.6f}"


def _is_web_url(value: str) -> bool:
    if len(value) > 2000:
        return False
    try:
        validate.URL(schemes={"http", "https"})(value)
    except ValidationError:
        return False
    return True


# -- formats -------------------------------------------------------------------------------

def _service_entry(code: str) -> dict:
    name = CATEGORIES[code]
    group, keywords, description = SERVICE_INFO.get(code, ("其他", name, name))
    return {"service_code": code, "service_name": name, "description": f"{description}。{CONTACT_NOTE}",
            "metadata": True, "type": "realtime", "keywords": keywords, "group": group}


def _endpoint_url() -> str:
    return f"{request.host_url.rstrip('/')}{request.script_root}{bp.url_prefix}"


def _respond(fmt: str, root: str, payload, status: int = 200) -> Response:
    if fmt == "json":
        body, content_type = json.dumps(payload, ensure_ascii=False), JSON_CONTENT_TYPE
    else:
        body = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(_element(root, payload), encoding="unicode")
        content_type = XML_CONTENT_TYPE
    response = Response(body.encode("utf-8"), status=status, content_type=content_type)
    if request.method in ("GET", "HEAD"):
        response.headers["Access-Control-Allow-Origin"] = "*"  # public data, no cookies involved
    return response


def _errors(status: int, *descriptions: str) -> Response:
    fmt = (request.view_args or {}).get("fmt") or ("json" if request.path.endswith(".json") else "xml")
    return _respond(fmt, "errors", [{"code": status, "description": d} for d in descriptions], status)


def _element(tag: str, value) -> ET.Element:
    element = ET.Element(tag)
    if isinstance(value, dict):
        for key, item in value.items():
            element.append(_element(key, item))
    elif isinstance(value, list):
        for item in value:
            element.append(_element(ITEMS[tag], item))
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = NOT_XML_CHAR.sub("", str(value))
    return element
