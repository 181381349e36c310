"""Working-day deadlines: the holiday files, the counting rule, and a diagram timer using them."""
import json
import logging
import re
import shutil
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from services.common.clock import FrozenClock, use_clock
from services.common.models import OutboxMessage, WorkflowInstance
from services.common.workdays import (CHINA_TZ, DEFAULT_DIRECTORY, CalendarDataError, WorkCalendar,
                                      workday_helpers)
from services.common.workflow.sandbox import RestrictedEnvironment, compile_restricted
from services.common.workflow.specs import read_sources

UTC = timezone.utc


def sh(*args):
    """A Shanghai local time."""
    return datetime(*args, tzinfo=CHINA_TZ)


@pytest.fixture(scope="module")
def calendar():
    return WorkCalendar()


# ---------------------------------------------------------------- the data files

@pytest.mark.parametrize("path", sorted(DEFAULT_DIRECTORY.glob("*.json")), ids=lambda p: p.name)
def test_each_year_file_is_consistent_with_the_2025_holiday_law(path):
    """Since 2025 there are 13 statutory days off a year (全国年节及纪念日放假办法, 2024年修订);
    weekday days off minus make-up working days must come to exactly that. If a new notice
    breaks this, check the file against the notice before changing the test."""
    data = json.loads(path.read_text(encoding="utf-8"))
    holidays = [date.fromisoformat(d) for d in data["holidays"]]
    workdays = [date.fromisoformat(d) for d in data["workdays"]]
    assert len(set(holidays)) == len(holidays) and len(set(workdays)) == len(workdays)
    assert all(d.weekday() >= 5 for d in workdays)
    if data["year"] >= 2025:
        assert sum(d.weekday() < 5 for d in holidays) - len(workdays) == 13
    assert "unverified" in data["source"] or "gov.cn" in data["source"]


def test_2026_is_the_official_schedule(calendar):
    # 国务院办公厅关于2026年部分节假日安排的通知 (2025-11-04)
    off = [(2026, 1, 1), (2026, 1, 2), (2026, 1, 3), (2026, 2, 15), (2026, 2, 23), (2026, 4, 6),
           (2026, 5, 1), (2026, 5, 5), (2026, 6, 19), (2026, 9, 25), (2026, 10, 1), (2026, 10, 7)]
    make_up = [(2026, 1, 4), (2026, 2, 14), (2026, 2, 28), (2026, 5, 9), (2026, 9, 20), (2026, 10, 10)]
    assert not any(calendar.is_workday(date(*d)) for d in off)
    assert all(calendar.is_workday(date(*d)) for d in make_up)
    assert calendar.is_workday(date(2026, 2, 24)) and calendar.is_workday(date(2026, 10, 8))
    assert not calendar.is_workday(date(2026, 3, 7))  # an ordinary Saturday
    working = sum(calendar.is_workday(date(2026, 1, 1) + timedelta(days=i)) for i in range(365))
    assert working == 248


def test_2025_is_the_official_schedule(calendar):
    # 国办发明电〔2024〕12号
    assert not calendar.is_workday(date(2025, 1, 28)) and not calendar.is_workday(date(2025, 10, 8))
    assert calendar.is_workday(date(2025, 1, 26)) and calendar.is_workday(date(2025, 10, 11))
    assert calendar.is_workday(date(2025, 4, 27)) and calendar.is_workday(date(2025, 9, 28))


# ---------------------------------------------------------------- the rule

@pytest.mark.parametrize("start, n, due", [
    # weekends are skipped; the time of day is kept
    (sh(2026, 11, 6, 16, 0), 1, sh(2026, 11, 9, 16, 0)),
    (sh(2026, 11, 2, 17, 30), 1, sh(2026, 11, 3, 17, 30)),
    (sh(2026, 11, 2, 17, 30), 7, sh(2026, 11, 11, 17, 30)),
    (sh(2026, 11, 6, 23, 59, 59), 1, sh(2026, 11, 9, 23, 59, 59)),
    # the eve of National Day skips the whole block; the make-up Saturday counts
    (sh(2026, 9, 30, 16, 0), 1, sh(2026, 10, 8, 16, 0)),
    (sh(2026, 9, 30, 16, 0), 3, sh(2026, 10, 10, 16, 0)),
    # Spring Festival: Friday before → make-up Saturday 02-14, then 02-24 after the block
    (sh(2026, 2, 13, 10, 0), 1, sh(2026, 2, 14, 10, 0)),
    (sh(2026, 2, 13, 10, 0), 2, sh(2026, 2, 24, 10, 0)),
    (sh(2026, 2, 13, 10, 0), 7, sh(2026, 3, 2, 10, 0)),  # 14, 24, 25, 26, 27, 28 (Sat), 03-02
    # a make-up Saturday is a working day to start on too
    (sh(2026, 2, 28, 11, 0), 1, sh(2026, 3, 2, 11, 0)),
    # a start on a non-working day counts from 09:00 on the next working day
    (sh(2026, 11, 7, 14, 0), 1, sh(2026, 11, 10, 9, 0)),
    (sh(2026, 11, 7, 14, 0), 0, sh(2026, 11, 9, 9, 0)),
    (sh(2026, 2, 17, 15, 0), 1, sh(2026, 2, 25, 9, 0)),
    (sh(2026, 10, 3, 8, 0), 1, sh(2026, 10, 9, 9, 0)),
    # n = 0 on a working day is the start itself
    (sh(2026, 11, 2, 17, 30), 0, sh(2026, 11, 2, 17, 30)),
], ids=str)
def test_add_workdays(calendar, start, n, due):
    assert calendar.add_workdays(start, n) == due


def test_days_are_shanghai_days_not_utc_days(calendar):
    # Friday 17:00 UTC is already Saturday 01:00 in Shanghai: a non-working day start.
    start = datetime(2026, 1, 30, 17, 0, tzinfo=UTC)
    assert not calendar.is_workday(start)
    due = calendar.add_workdays(start, 1)
    assert due == sh(2026, 2, 3, 9, 0) == datetime(2026, 2, 3, 1, 0, tzinfo=UTC)
    assert due.tzinfo is UTC  # the answer is in the start's timezone
    # ... whereas 15:59 UTC is still Friday 23:59 in Shanghai: due Monday 23:59 Shanghai.
    assert calendar.add_workdays(datetime(2026, 1, 30, 15, 59, tzinfo=UTC), 1) == sh(2026, 2, 2, 23, 59)


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True, None])
def test_working_days_must_be_a_whole_number(calendar, bad):
    with pytest.raises(ValueError, match="whole number"):
        calendar.add_workdays(sh(2026, 11, 2, 9, 0), bad)


def test_naive_datetimes_are_refused(calendar):
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar.add_workdays(datetime(2026, 11, 2, 9, 0), 1)


# ---------------------------------------------------------------- missing and bad files

@pytest.fixture
def only_2026(tmp_path):
    shutil.copy(DEFAULT_DIRECTORY / "2026.json", tmp_path / "2026.json")
    return tmp_path


def test_a_missing_year_counts_plain_weekends_and_says_so(only_2026, caplog):
    calendar = WorkCalendar(only_2026, recheck_seconds=3600)
    assert calendar.covered_years == {2026} and calendar.missing_years == set()
    with caplog.at_level(logging.WARNING, logger="services.common.workdays"):
        # 2035-10-01 is a Monday; without a 2035 file it is an ordinary working day.
        assert calendar.is_workday(date(2035, 10, 1))
        assert not calendar.is_workday(date(2035, 10, 6))  # Saturday
        assert calendar.add_workdays(sh(2035, 10, 5, 10, 0), 1) == sh(2035, 10, 8, 10, 0)
    assert calendar.missing_years == {2035}
    warnings = [r for r in caplog.records if "2035" in r.getMessage()]
    assert len(warnings) == 1 and "plain weekends" in warnings[0].getMessage()
    # Across the year end: 2026-12-31 (Thursday) + 1 lands in the missing 2027.
    assert calendar.add_workdays(sh(2026, 12, 31, 10, 0), 1) == sh(2027, 1, 1, 10, 0)
    assert 2027 in calendar.missing_years


def test_a_year_file_added_while_running_is_picked_up(only_2026):
    calendar = WorkCalendar(only_2026, recheck_seconds=0)
    assert calendar.is_workday(date(2035, 10, 1))
    (only_2026 / "2035.json").write_text(json.dumps({
        "year": 2035, "source": "test data", "holidays": ["2035-10-01"], "workdays": ["2035-09-29"]}))
    assert not calendar.is_workday(date(2035, 10, 1))
    assert calendar.is_workday(date(2035, 9, 29))
    assert calendar.missing_years == set() and 2035 in calendar.covered_years


def test_a_bad_file_added_while_running_is_not_used(only_2026, caplog):
    calendar = WorkCalendar(only_2026, recheck_seconds=0)
    (only_2026 / "2035.json").write_text("{not json")
    with caplog.at_level(logging.ERROR, logger="services.common.workdays"):
        assert calendar.is_workday(date(2035, 10, 1))
    assert "is not used" in caplog.text and calendar.missing_years == {2035}


@pytest.mark.parametrize("content, problem", [
    ({"year": 2030, "source": "x", "holidays": [], "workdays": []}, "file name says 2035"),
    ({"year": "2035", "source": "x", "holidays": [], "workdays": []}, "file name says 2035"),
    ({"year": 2035, "source": "", "holidays": [], "workdays": []}, "source"),
    ({"year": 2035, "source": "x", "holidays": ["2035-13-01"], "workdays": []}, "ValueError"),
    ({"year": 2035, "source": "x", "holidays": ["2036-01-01"], "workdays": []}, "outside 2035"),
    ({"year": 2035, "source": "x", "holidays": [], "workdays": ["2035-10-01"]}, "only weekend days"),
    ({"year": 2035, "source": "x", "holidays": ["2035-09-29"], "workdays": ["2035-09-29"]}, "both"),
    ({"year": 2035, "source": "x", "holidays": []}, "KeyError"),
])
def test_bad_files_are_refused_at_start(tmp_path, content, problem):
    (tmp_path / "2035.json").write_text(json.dumps(content))
    with pytest.raises(CalendarDataError, match=problem):
        WorkCalendar(tmp_path)


def test_late_december_dates_may_sit_in_the_next_years_file(tmp_path):
    (tmp_path / "2036.json").write_text(json.dumps(
        {"year": 2036, "source": "x", "holidays": ["2035-12-31"], "workdays": []}))
    assert not WorkCalendar(tmp_path).is_workday(date(2035, 12, 31))


def test_a_missing_directory_is_a_configuration_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="holiday calendar directory"):
        WorkCalendar(tmp_path / "nowhere")


# ---------------------------------------------------------------- the diagram helpers

def test_helpers_read_the_platform_clock(calendar):
    helpers = workday_helpers(calendar)
    with use_clock(FrozenClock(sh(2026, 11, 6, 16, 0).astimezone(UTC))):  # Friday
        assert helpers["due_after_workdays"](1) == "2026-11-09T08:00:00+00:00"
        assert helpers["workdays_duration"](1) == f"PT{3 * 86400}S"
        assert helpers["workdays_duration"](0) == "PT0S"
    with use_clock(FrozenClock(datetime(2026, 11, 7, 6, 0, 0, 500, tzinfo=UTC))):  # Saturday 14:00
        # due Tuesday 09:00 Shanghai = 01:00 UTC: 2 days 19 hours less the half millisecond
        assert helpers["due_after_workdays"](1) == "2026-11-10T01:00:00+00:00"
        assert helpers["workdays_duration"](1) == "PT241199.9995S"


def test_helpers_pass_the_sandbox_and_spiff_parses_their_results(calendar):
    from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
    environment = RestrictedEnvironment(workday_helpers(calendar))
    with use_clock(FrozenClock(sh(2026, 9, 30, 16, 0).astimezone(UTC))):
        for source in ("workdays_duration(1)", "due_after_workdays(1)"):
            compile_restricted(source)
        duration = environment.evaluate("workdays_duration(1)", {})
        when = environment.evaluate("due_after_workdays(1)", {})
    parsed = TimerEventDefinition.parse_iso_duration(duration)
    assert timedelta(**parsed) == timedelta(days=8)
    assert TimerEventDefinition.parse_time_or_duration(when) == sh(2026, 10, 8, 16, 0)


# ---------------------------------------------------------------- a diagram timer on working days

SUBMISSION = {"case_no": "210902-20260930-0001", "district": "210902", "name": "张三",
              "phone": "13800001234", "description": "楼上漏水，天花板一直滴水", "category": "",
              "channel": "web", "location": "", "submitted_at": "2026-09-30T08:00:00+00:00"}


@pytest.mark.parametrize("timer", [
    "<bpmn:timeDuration>workdays_duration(1)</bpmn:timeDuration>",
    "<bpmn:timeDate>due_after_workdays(1)</bpmn:timeDate>",
])
def test_the_assign_deadline_counts_working_days(build_service, timer):
    # Submitted on the eve of National Day (Wednesday 2026-09-30 16:00 Shanghai): one working
    # day to assign runs out on Thursday 2026-10-08 16:00 Shanghai, after the holiday block.
    clock = FrozenClock(datetime(2026, 9, 30, 8, 0, tzinfo=UTC))
    dispatch = build_service("dispatch", clock=clock)
    sources = read_sources(dispatch.settings.bpmn_dir, "dispatch")
    # Only the assign deadline (the boundary timer on 分拨交办) switches to working days.
    assign_timer = re.compile(r'(<bpmn:boundaryEvent [^>]*attachedToRef="assign"'
                              r'(?:(?!</bpmn:boundaryEvent>).)*?)'
                              r'<bpmn:timeDuration>workdays_duration\(1\)</bpmn:timeDuration>', re.S)
    sources["dispatch.bpmn"], found = assign_timer.subn(
        lambda m: m.group(1) + timer, sources["dispatch.bpmn"], count=1)
    assert found == 1, "bpmn/dispatch.bpmn no longer has the 1-working-day assign timer"
    spec_hash, _ = dispatch.deploy(sources)  # the repository's own diagram already counts working days
    with dispatch.uow() as uow:
        assert dispatch.specs.latest(uow.session).hash == spec_hash
    with dispatch.uow() as uow:
        dispatch.runtime.deliver(uow, "intake.case_submitted", SUBMISSION, SUBMISSION["case_no"])
        uow.commit()
    due = datetime(2026, 10, 8, 8, 0, tzinfo=UTC)
    with dispatch.uow() as uow:
        instance = uow.session.scalars(select(WorkflowInstance)).one()
        assert instance.next_timer_at == due
    clock.advance(due - clock.now() - timedelta(seconds=1))  # a calendar day later is not enough
    assert dispatch.runtime.fire_due_timers(dispatch.uow) == 0
    clock.advance(timedelta(seconds=2))
    assert dispatch.runtime.fire_due_timers(dispatch.uow) == 1
    with dispatch.uow() as uow:
        [missed] = uow.session.scalars(select(OutboxMessage).where(
            OutboxMessage.routing_key == "dispatch.deadline_missed")).all()
    assert missed.envelope["body"]["case_no"] == SUBMISSION["case_no"]


def test_services_get_the_helpers(build_service):
    dispatch = build_service("dispatch")
    assert dispatch.calendar.directory == DEFAULT_DIRECTORY
    assert {"due_after_workdays", "workdays_duration"} <= set(dispatch.runtime.engine.environment.globals)
