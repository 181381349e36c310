"""受理量统计 (services/intake/stats.py): days in China time, scopes, the SVG chart, the CSV.

The platform clock of these tests reads 2026-11-02 09:00 UTC = 17:00 in 阜新, so "today" is
2026-11-02 and the default period is 2026-10-04 … 2026-11-02.
"""
import csv
import io
import re
from datetime import UTC, date, datetime

import pytest

from services.common.demo import DEMO_PASSWORD, load_demo_accounts
from services.common.web.app import create_app
from services.intake.models import CitizenRequest
from services.intake.stats import arrange, bar_chart, daily_volume
from services.intake.volume_counts import add_request

# (UTC time, district, channel): the first two straddle midnight in China (UTC+8)
REQUESTS = [
    (datetime(2026, 11, 1, 15, 59, 59, tzinfo=UTC), "210902", "web"),         # 11-01 23:59:59 China
    (datetime(2026, 11, 1, 16, 0, 0, tzinfo=UTC), "210902", "web"),           # 11-02 00:00:00 China
    (datetime(2026, 11, 2, 1, 0, tzinfo=UTC), "210902", "hotline_12345"),     # 11-02
    (datetime(2026, 11, 2, 2, 0, tzinfo=UTC), "210911", "web"),               # 11-02
    (datetime(2026, 10, 31, 23, 0, tzinfo=UTC), "210911", "open311"),         # 11-01 (Sunday)
    (datetime(2026, 10, 3, 15, 0, tzinfo=UTC), "210902", "web"),              # 10-03 23:00: before the default period
    (datetime(2026, 10, 3, 16, 0, tzinfo=UTC), "210902", "web"),              # 10-04 00:00: its first day
]


def csrf(html):
    return re.search(r'name="csrf_token"[^>]*? value="([^"]+)"', html).group(1)


def login(client, username):
    token = csrf(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": DEMO_PASSWORD})
    assert response.status_code == 302


def add_requests(service, rows):
    """Stored and counted as ``submit_request`` does, at the given times."""
    with service.uow() as uow:
        for i, (at, district, channel) in enumerate(rows):
            add_request(uow, CitizenRequest(
                case_no=f"{district}-x-{i:04d}", tracking_code="ABCDEFGH", district=district, name="张三",
                phone="13800001234", description="测试诉求内容", category="", channel=channel, location="",
                status="submitted", created_at=at))
        uow.commit()


@pytest.fixture
def intake(build_service):
    service = build_service("intake")
    load_demo_accounts(service)
    add_requests(service, REQUESTS)
    return service


def client_for(intake, username):
    client = create_app(intake).test_client()
    login(client, username)
    return client


def test_days_are_china_days(intake):
    rows = daily_volume(intake, date(2026, 10, 1), date(2026, 11, 2), ["210902", "210911"])
    assert rows == [
        ("2026-10-03", "210902", "web", 1), ("2026-10-04", "210902", "web", 1),
        ("2026-11-01", "210902", "web", 1), ("2026-11-01", "210911", "open311", 1),
        ("2026-11-02", "210902", "hotline_12345", 1), ("2026-11-02", "210902", "web", 1),
        ("2026-11-02", "210911", "web", 1)]
    # the period's ends are China days too
    assert daily_volume(intake, date(2026, 11, 2), date(2026, 11, 2), ["210902"]) == [
        ("2026-11-02", "210902", "hotline_12345", 1), ("2026-11-02", "210902", "web", 1)]


def test_page_shows_the_last_30_days_by_district(intake):
    page = client_for(intake, "supervisor").get("/staff/volume")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'value="2026-10-04"' in html and 'value="2026-11-02"' in html and "30 天" in html
    summary = re.search(r'<dl class="stats" id="volume-summary">(.*?)</dl>', html, re.DOTALL).group(1)
    assert re.search(r"合计</dt><dd class=\"num\">6 ", summary)  # the 10-03 request is outside
    table = re.search(r'<table id="volume-table".*?</table>', html, re.DOTALL).group(0)
    row = re.search(r"<tr[^>]*>\s*<th scope=\"row\" class=\"num\">2026-11-02.*?</tr>", table, re.DOTALL).group(0)
    cells = re.findall(r'<td class="num[^"]*">(\d+)</td>', row)
    assert cells[:4] == ["0", "0", "2", "1"]  # 阜蒙县, 彰武县, 海州区, 细河区 (DISTRICTS order)
    assert cells[-1] == "3"
    # an SVG chart drawn on the server: no script, no inline style (CSP)
    svg = re.search(r"<svg class=\"chart\".*?</svg>", html, re.DOTALL).group(0)
    assert "<script" not in svg and "style=" not in svg and "<title>" in svg
    assert "style=" not in html and "<script>" not in html


def test_by_channel_and_csv(intake):
    client = client_for(intake, "operator")
    html = client.get("/staff/volume?start=2026-11-01&end=2026-11-02&by=channel").get_data(as_text=True)
    header = re.search(r"<thead>(.*?)</thead>", html.split('id="volume-table"')[1], re.DOTALL).group(1)
    assert "12345热线" in header and "Open311接口" in header and "县区" not in header
    response = client.get("/staff/volume.csv?start=2026-11-01&end=2026-11-02")
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="volume-20261101-20261102.csv"'
    text = response.get_data().decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    assert rows[0] == ["日期", "县区代码", "县区", "渠道代码", "渠道", "诉求件数"]
    assert ["2026-11-02", "210902", "海州区", "hotline_12345", "12345热线", "1"] in rows
    assert len(rows) == 6 and sum(int(r[5]) for r in rows[1:]) == 5
    assert client.get("/staff/volume.csv?start=2026-11-31").status_code == 400


def test_dispatcher_sees_only_their_district(intake):
    client = client_for(intake, "fenbo_haizhou")
    html = client.get("/staff/volume?district=210911&start=2026-11-01&end=2026-11-02").get_data(as_text=True)
    assert "分拨员只能查看本县区" in html and 'name="district"' not in html
    assert re.search(r"合计</dt><dd class=\"num\">3 ", html)  # 海州区 only (2 on 11-02, 1 on 11-01)
    assert "细河区" not in html.split('id="volume-table"')[1]
    rows = list(csv.reader(io.StringIO(client.get("/staff/volume.csv?district=210911&start=2026-11-01&end=2026-11-02")
                                       .get_data().decode("utf-8")[1:])))
    assert {r[1] for r in rows[1:]} == {"210902"}


def test_clear_errors_for_bad_periods(intake):
    client = client_for(intake, "supervisor")
    bad = client.get("/staff/volume?start=2026-13-01")
    assert bad.status_code == 400 and "开始日期格式不对" in bad.get_data(as_text=True)
    swapped = client.get("/staff/volume?start=2026-11-02&end=2026-11-01")
    assert swapped.status_code == 400 and "开始日期不能晚于结束日期" in swapped.get_data(as_text=True)
    long = client.get("/staff/volume?start=2020-01-01&end=2026-11-02")
    assert long.status_code == 400 and "一次最多查询366天" in long.get_data(as_text=True)
    empty = client.get("/staff/volume?start=2025-01-01&end=2025-01-31").get_data(as_text=True)
    assert "所选期间没有受理诉求" in empty and "<svg class=\"chart\"" not in empty


@pytest.mark.parametrize("username, status", [("bm_zhujian", 403), ("chief", 403), ("mediator", 403),
                                              ("admin", 200), ("operator", 200), ("fenbo_xihe", 200)])
def test_who_may_read_volume(intake, username, status):
    assert client_for(intake, username).get("/staff/volume").status_code == status


def test_chart_is_valid_svg_with_a_bar_per_day():
    from xml.etree import ElementTree as ET
    rows = [("2026-11-01", "210902", "web", 3), ("2026-11-01", "210911", "web", 2), ("2026-11-03", "210902", "web", 7)]
    volume = arrange(rows, date(2026, 11, 1), date(2026, 11, 3), "district", ["210902", "210911"])
    assert [volume.day_total(d) for d in volume.days] == [5, 0, 7]
    svg = ET.fromstring(str(bar_chart(volume)))
    titles = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert titles == ["11-01（周日） 海州区：3 件", "11-01（周日） 细河区：2 件", "11-03（周二） 海州区：7 件"]


@pytest.mark.integration
def test_days_are_china_days_on_postgresql(build_service, make_pg_database):
    service = build_service("intake", database_url=make_pg_database("intake_stats"))
    add_requests(service, REQUESTS)
    rows = daily_volume(service, date(2026, 11, 1), date(2026, 11, 2), ["210902", "210911"])
    assert rows == [
        ("2026-11-01", "210902", "web", 1), ("2026-11-01", "210911", "open311", 1),
        ("2026-11-02", "210902", "hotline_12345", 1), ("2026-11-02", "210902", "web", 1),
        ("2026-11-02", "210911", "web", 1)]
