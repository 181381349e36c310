"""Working days: the holiday calendar and the deadline helpers diagrams call.

Deadlines such as "1 working day to assign" are timer events in the diagrams. They are
counted on the official calendar: Monday to Friday, minus the public holidays of the State
Council's yearly notice, plus its make-up working days (调休上班) on weekends. One JSON
file a year lives in ``data/holidays/<year>.json`` (format and upkeep: docs/workdays.md).

The rule (all in China Standard Time, Asia/Shanghai, UTC+8):

* A deadline of n working days is the same time of day on the n-th working day after the
  start's day: submitted Friday 16:00, 1 working day → Monday 16:00; the eve of a holiday
  skips the whole holiday block.
* A start on a non-working day (weekend or holiday) counts as a start at 09:00
  (``WorkCalendar.day_starts_at``) on the next working day: submitted Saturday 14:00,
  1 working day → Tuesday 09:00.
* Days are Shanghai days, never UTC days: 2026-01-30 17:00 UTC is Saturday 01:00 in Shanghai.
* A year without a file is counted as plain weekends (Monday to Friday work) and logged as a
  warning once; ``WorkCalendar.missing_years`` lists such years. A file added later is
  picked up without a restart (looked for again at most every ``recheck_seconds``).

Diagram expressions call two helpers (``workday_helpers``), both from the platform clock
(``services.common.clock.current_clock``), never the system time:

* ``due_after_workdays(n)`` → ISO datetime in UTC, for ``<bpmn:timeDate>``;
* ``workdays_duration(n)`` → ISO duration ``"PT<seconds>S"`` from now to that deadline, for
  ``<bpmn:timeDuration>`` (a one-word change from ``"P1D"``).
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from datetime import date, datetime, time as dtime, timedelta, timezone
from pathlib import Path

from .clock import current_clock
from .config import REPO_ROOT

log = logging.getLogger(__name__)

# China has kept UTC+8 without daylight saving since 1991, so a fixed offset is exactly
# Asia/Shanghai for every date a deadline can fall on (and needs no tz database in the image).
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
DEFAULT_DIRECTORY = REPO_ROOT / "data" / "holidays"
DAY_STARTS_AT = dtime(9, 0)
# The longest official block of days off is 9 days (Spring Festival 2026); more than this
# many non-working days in a row means a broken data file.
_MAX_DAYS_OFF_IN_A_ROW = 31


class CalendarDataError(ValueError):
    """A holiday file that must not be used (the message names the file and the entry)."""


def _as_count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"工作日数须为非负整数 (working days must be a whole number ≥ 0), got {n!r}")
    return n


def _local(moment: datetime) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got {moment!r}")
    return moment.astimezone(CHINA_TZ)


class WorkCalendar:
    """Working days from the yearly holiday files in ``directory``."""

    def __init__(self, directory: Path | str | None = None, day_starts_at: dtime = DAY_STARTS_AT,
                 recheck_seconds: float = 300.0):
        self.directory = Path(directory) if directory is not None else DEFAULT_DIRECTORY
        if not self.directory.is_dir():
            raise FileNotFoundError(
                f"节假日目录不存在 (holiday calendar directory missing): {self.directory} — "
                "see docs/workdays.md")
        self.day_starts_at = day_starts_at
        self.recheck_seconds = recheck_seconds
        self.sources: dict[int, str] = {}  # year -> the notice its file cites
        self._holidays: set[date] = set()
        self._workdays: set[date] = set()
        self._missing: set[int] = set()
        self._checked: dict[int, float] = {}
        self._lock = threading.Lock()
        for path in sorted(self.directory.glob("[0-9][0-9][0-9][0-9].json")):
            self._load(path)

    # -- data -----------------------------------------------------------------------------

    @property
    def covered_years(self) -> set[int]:
        return set(self.sources)

    @property
    def missing_years(self) -> set[int]:
        """Years asked about that have no file: counted as plain weekends."""
        return set(self._missing)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            year = data["year"]
            source = data["source"]
            holidays = [date.fromisoformat(d) for d in data["holidays"]]
            workdays = [date.fromisoformat(d) for d in data["workdays"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CalendarDataError(f"{path}: {type(err).__name__}: {err}") from None
        if isinstance(year, bool) or not isinstance(year, int) or str(year) != path.stem:
            raise CalendarDataError(f"{path}: \"year\" is {year!r}, the file name says {path.stem}")
        if not isinstance(source, str) or not source.strip():
            raise CalendarDataError(f"{path}: \"source\" must name the notice the dates come from")
        for day in holidays + workdays:
            # A notice may reach back into the last days of December of the year before.
            if not (day.year == year or (day.year == year - 1 and day.month == 12)):
                raise CalendarDataError(f"{path}: {day} is outside {year}")
        for day in workdays:
            if day.weekday() < 5:
                raise CalendarDataError(
                    f"{path}: make-up working day {day} is a {day:%A}: only weekend days can be one")
        both = set(holidays) & set(workdays)
        if both:
            raise CalendarDataError(f"{path}: {sorted(both)} are both holidays and working days")
        clash = (set(holidays) & self._workdays) | (set(workdays) & self._holidays)
        if clash:
            raise CalendarDataError(f"{path}: {sorted(clash)} contradict another year's file")
        self._holidays.update(holidays)
        self._workdays.update(workdays)
        self.sources[year] = source
        self._missing.discard(year)

    def _has_year(self, year: int) -> bool:
        if year in self.sources:
            return True
        with self._lock:
            if year in self.sources:
                return True
            now = time.monotonic()
            last = self._checked.get(year)
            if last is not None and now - last < self.recheck_seconds:
                return False
            self._checked[year] = now
            path = self.directory / f"{year}.json"
            if path.exists():
                try:
                    self._load(path)
                except CalendarDataError as err:  # a bad file added while running: not used
                    log.error("holiday calendar: %s is not used: %s", path, err)
                else:
                    log.info("holiday calendar: loaded %s", path)
                    return True
            if year not in self._missing:
                self._missing.add(year)
                log.warning("holiday calendar: no %s in %s — %s is counted as plain weekends "
                            "(Monday to Friday work) until the file is added (docs/workdays.md)",
                            path.name, self.directory, year)
            return False

    # -- days -----------------------------------------------------------------------------

    def is_workday(self, day: date | datetime) -> bool:
        """Whether ``day`` (a date, or an aware datetime taken in Shanghai time) is a working day."""
        if isinstance(day, datetime):
            day = _local(day).date()
        self._has_year(day.year)
        if day in self._workdays:
            return True
        if day in self._holidays:
            return False
        return day.weekday() < 5

    def next_workday(self, day: date) -> date:
        """The first working day after ``day``."""
        for _ in range(_MAX_DAYS_OFF_IN_A_ROW):
            day += timedelta(days=1)
            if self.is_workday(day):
                return day
        raise CalendarDataError(f"no working day in the {_MAX_DAYS_OFF_IN_A_ROW} days after {day}")

    def add_workdays(self, start: datetime, n: int) -> datetime:
        """The deadline ``n`` working days after ``start`` (aware), in ``start``'s timezone.

        Same Shanghai time of day on the n-th working day after the start's Shanghai day; a
        start on a non-working day counts from ``day_starts_at`` (09:00) on the next working
        day (so n=0 gives that moment). Friday 16:00 + 1 → Monday 16:00; Saturday 14:00 + 1
        → Tuesday 09:00.
        """
        n = _as_count(n)
        local = _local(start)
        day = local.date()
        if not self.is_workday(day):
            day = self.next_workday(day)
            local = datetime.combine(day, self.day_starts_at, CHINA_TZ)
        for _ in range(n):
            day = self.next_workday(day)
        return datetime.combine(day, local.timetz()).astimezone(start.tzinfo)


def calendar_for(settings) -> WorkCalendar:
    """The calendar a service uses: ``settings.holiday_dir`` when the settings have one
    (``FZT_HOLIDAY_DIR``), else ``data/holidays`` in the repository."""
    return WorkCalendar(settings.holiday_dir)


def _iso_seconds(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds <= 0:
        return "PT0S"
    if seconds == math.floor(seconds):
        return f"PT{int(seconds)}S"
    return "PT" + f"{seconds:.6f}".rstrip("0") + "S"


def workday_helpers(calendar: WorkCalendar) -> dict:
    """The helpers diagram expressions may call (passed to the runtime's sandbox)."""

    def due_after_workdays(n):
        """ISO datetime (UTC) ``n`` working days after the platform clock's now: a timeDate."""
        return calendar.add_workdays(current_clock().now(), n).astimezone(timezone.utc).isoformat()

    def workdays_duration(n):
        """ISO duration from now to ``n`` working days after now: a timeDuration."""
        now = current_clock().now()
        return _iso_seconds(calendar.add_workdays(now, n) - now)

    def workdays_after(moment, n):
        """ISO datetime (UTC) ``n`` working days after the ISO datetime ``moment`` — e.g. a
        deadline moved by an approved extension."""
        start = datetime.fromisoformat(moment)
        return calendar.add_workdays(start, n).astimezone(timezone.utc).isoformat()

    return {"due_after_workdays": due_after_workdays, "workdays_duration": workdays_duration,
            "workdays_after": workdays_after}
