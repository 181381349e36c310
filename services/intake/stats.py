"""Daily request volume (受理量统计, S5): requests per China-time day, per district and channel.

``/staff/volume`` shows a period (default: the last 30 days, today included) as a stacked
bar chart drawn on the server as SVG (no JavaScript; the CSP allows none inline) and as a
table; ``/staff/volume.csv`` downloads the same counts. A dispatcher sees their own district
only. The counts are read from ``request_counts`` (one row per China day, district and channel,
kept by services/intake/volume_counts.py when a request is stored), so a period costs the same
at ten thousand requests as at a million. Notes: docs/publicity.md.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import date, timedelta

from flask import Blueprint, Response, current_app, render_template, request, url_for
from flask_login import current_user
from markupsafe import Markup, escape
from sqlalchemy import select

from services.common.reference import CHANNELS, DISTRICTS
from services.common.web.app import CHINA_TZ
from services.common.web.auth import roles_required

from .models import RequestCount

bp = Blueprint("stats", __name__, url_prefix="/staff")

VOLUME_ROLES = ("dispatcher", "supervisor", "intake_operator", "leader")  # and admin
DEFAULT_DAYS = 30
MAX_DAYS = 366
# Okabe–Ito: tells the series apart for colour-blind readers too.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8C6D31", "#6B7785")
BY = {"district": "按县区", "channel": "按渠道"}
WEEKDAYS = "一二三四五六日"


# -- the numbers ----------------------------------------------------------------------------

def today_in_china(service) -> date:
    return service.clock.now().astimezone(CHINA_TZ).date()


def daily_volume(service, start: date, end: date, districts) -> list[tuple[str, str, str, int]]:
    """(day 'YYYY-MM-DD', district, channel, requests) for China days start..end (inclusive)."""
    query = (select(RequestCount.day, RequestCount.district, RequestCount.channel, RequestCount.n)
             .where(RequestCount.district.in_(list(districts)), RequestCount.day.between(start, end))
             .order_by(RequestCount.day, RequestCount.district, RequestCount.channel))
    with service.uow() as uow:
        return [(day.isoformat(), district, channel, n) for day, district, channel, n in uow.session.execute(query)]


@dataclass
class Volume:
    """The counts of a period, arranged by day and one dimension (district or channel)."""

    days: list[date]
    keys: list[str]  # the series: district codes or channel codes, in display order
    names: dict[str, str]
    cells: dict[date, dict[str, int]] = field(default_factory=dict)

    def count(self, day: date, key: str) -> int:
        return self.cells.get(day, {}).get(key, 0)

    def day_total(self, day: date) -> int:
        return sum(self.cells.get(day, {}).values())

    def key_total(self, key: str) -> int:
        return sum(row.get(key, 0) for row in self.cells.values())

    @property
    def total(self) -> int:
        return sum(self.day_total(d) for d in self.days)

    @property
    def busiest(self):
        return max(self.days, key=lambda d: (self.day_total(d), d)) if self.total else None

    def color(self, key: str) -> str:
        return PALETTE[self.keys.index(key) % len(PALETTE)]


def arrange(rows, start: date, end: date, by: str, districts) -> Volume:
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    if by == "district":
        keys, names = list(districts), dict(DISTRICTS)
    else:
        seen = {row[2] for row in rows}
        keys = [c for c in CHANNELS] + sorted(seen - set(CHANNELS))  # an unknown channel still counts
        names = {**{c: c for c in seen}, **CHANNELS}
    volume = Volume(days, keys, names)
    for day, district, channel, n in rows:
        key = district if by == "district" else channel
        row = volume.cells.setdefault(date.fromisoformat(day), {})
        row[key] = row.get(key, 0) + n
    return volume


# -- the chart ------------------------------------------------------------------------------

def _nice_step(top: int, ticks: int = 5) -> int:
    raw = max(1, top) / ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return max(1, int(factor * power))
    return int(10 * power)


def bar_chart(volume: Volume, title_id: str = "chart-title", desc_id: str = "chart-desc") -> Markup:
    """Stacked bars, one per day, as inline SVG (``fill`` attributes, no ``style``: CSP-safe).
    Each segment has a <title> (the browser shows it on hover, screen readers read it)."""
    width, height = 1000, 300
    left, right, top, bottom = 40, 8, 30, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(volume.days)
    highest = max((volume.day_total(d) for d in volume.days), default=0)
    step = _nice_step(highest)
    y_max = max(step, math.ceil(highest / step) * step)
    slot = plot_w / n
    bar = max(1.0, slot * 0.72)
    label_every = max(1, math.ceil(n / 15))

    def y(value):
        return top + plot_h - value * plot_h / y_max

    out = [(f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
            f'aria-labelledby="{title_id}" aria-describedby="{desc_id}" xmlns="http://www.w3.org/2000/svg">')]
    out.append(f'<text x="{left - 6}" y="{top - 16}" text-anchor="end" font-size="12" fill="#616e7c">件</text>')
    for i, day in enumerate(volume.days):  # weekends: a light band behind the bars
        if day.weekday() >= 5:
            out.append(f'<rect x="{left + i * slot:.1f}" y="{top}" width="{slot:.1f}" height="{plot_h}" fill="#f1f4f8"/>')
    for value in range(0, y_max + 1, step):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                   f'stroke="{"#9fb3c8" if value == 0 else "#e4e9f0"}" stroke-width="1"/>')
        out.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="12" '
                   f'fill="#616e7c">{value}</text>')
    for i, day in enumerate(volume.days):
        x = left + i * slot + (slot - bar) / 2
        base = 0
        label = f"{day:%m-%d}（周{WEEKDAYS[day.weekday()]}）"
        for key in volume.keys:
            n_key = volume.count(day, key)
            if not n_key:
                continue
            y0, y1 = y(base), y(base + n_key)
            out.append(f'<rect x="{x:.1f}" y="{y1:.1f}" width="{bar:.1f}" height="{max(0.5, y0 - y1):.1f}" '
                       f'fill="{volume.color(key)}"><title>{escape(label)} {escape(volume.names.get(key, key))}：'
                       f'{n_key} 件</title></rect>')
            base += n_key
        if base and n <= 45:
            out.append(f'<text x="{x + bar / 2:.1f}" y="{y(base) - 4:.1f}" text-anchor="middle" '
                       f'font-size="{11 if n <= 31 else 9}" fill="#1f2933">{base}</text>')
        if i % label_every == 0:
            out.append(f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                       f'font-size="12" fill="{"#b4232a" if day.weekday() >= 5 else "#616e7c"}">'
                       f'{day.month}/{day.day}</text>')
    out.append("</svg>")
    return Markup("".join(out))


# -- the pages ------------------------------------------------------------------------------

@dataclass
class Query:
    start: date
    end: date
    district: str  # "" = every district the user may see
    by: str
    errors: list[str]
    scoped: bool = False  # a dispatcher: ``district`` is theirs, whatever was asked


def _scope() -> str | None:
    """The one district a dispatcher (or a district's leader) may see (None: every district)."""
    if current_user.role == "dispatcher":
        return current_user.district or ""
    if current_user.role == "leader" and current_user.district:
        return current_user.district
    return None


def read_query(args, today: date) -> Query:
    errors = []
    scoped = _scope()
    end = start = None
    for name, label in (("start", "开始日期"), ("end", "结束日期")):
        raw = (args.get(name) or "").strip()
        if not raw:
            continue
        try:
            value = date.fromisoformat(raw)
        except ValueError:
            errors.append(f"{label}格式不对，请按 2026-11-01 的格式填写")
            continue
        if name == "start":
            start = value
        else:
            end = value
    end = end or (today if start is None else min(today, start + timedelta(days=DEFAULT_DAYS - 1)))
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        errors.append("开始日期不能晚于结束日期")
        start, end = end, start
    if (end - start).days + 1 > MAX_DAYS:
        errors.append(f"一次最多查询{MAX_DAYS}天，已显示结束日期前的{MAX_DAYS}天")
        start = end - timedelta(days=MAX_DAYS - 1)
    district = (args.get("district") or "").strip()
    if scoped is not None:
        district = scoped
    elif district and district not in DISTRICTS:
        errors.append("未知的县区，已显示全部县区")
        district = ""
    by = args.get("by") if args.get("by") in BY else ("channel" if district else "district")
    if scoped is not None:
        by = "channel"  # one district: its channels are what tells something
    return Query(start, end, district, by, errors, scoped is not None)


def _districts(query: Query) -> list[str]:
    return [query.district] if query.district or query.scoped else list(DISTRICTS)


def presets(today: date) -> list[tuple[str, date, date]]:
    first = today.replace(day=1)
    last_month_end = first - timedelta(days=1)
    return [("近7天", today - timedelta(days=6), today), ("近30天", today - timedelta(days=29), today),
            ("近90天", today - timedelta(days=89), today), ("本月", first, today),
            ("上月", last_month_end.replace(day=1), last_month_end)]


@bp.get("/volume")
@roles_required(*VOLUME_ROLES)
def volume():
    service = current_app.extensions["fzt"]
    today = today_in_china(service)
    query = read_query(request.args, today)
    rows = daily_volume(service, query.start, query.end, _districts(query))
    data = arrange(rows, query.start, query.end, query.by, _districts(query))
    params = {"start": query.start.isoformat(), "end": query.end.isoformat(), "by": query.by}
    if query.district and not query.scoped:
        params["district"] = query.district
    return render_template("intake/volume.html", q=query, volume=data, chart=bar_chart(data) if data.total else None,
                           params=params, presets=presets(today), BY=BY,
                           csv_url=url_for("stats.volume_csv", **params), today=today,
                           weekdays=WEEKDAYS), 400 if query.errors else 200


@bp.get("/volume.csv")
@roles_required(*VOLUME_ROLES)
def volume_csv():
    service = current_app.extensions["fzt"]
    query = read_query(request.args, today_in_china(service))
    if query.errors:
        return Response("；".join(query.errors) + "\n", status=400, content_type="text/plain; charset=utf-8")
    rows = daily_volume(service, query.start, query.end, _districts(query))
    out = io.StringIO()
    out.write("\ufeff")  # so that Excel reads the file as UTF-8
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["日期", "县区代码", "县区", "渠道代码", "渠道", "诉求件数"])
    for day, district, channel, n in rows:
        writer.writerow([day, district, DISTRICTS.get(district, district), channel, CHANNELS.get(channel, channel), n])
    scope = f"-{query.district}" if query.district else ""
    filename = f"volume{scope}-{query.start:%Y%m%d}-{query.end:%Y%m%d}.csv"
    return Response(out.getvalue().encode("utf-8"), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
