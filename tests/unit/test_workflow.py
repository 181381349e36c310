"""The workflow runtime driving the real diagrams, on SQLite with a frozen clock."""
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, func, select

from services.common.models import DeployedSpec, OutboxMessage, TimelineEntry, WorkflowInstance, WorkItem
from services.common.workflow.runtime import Conflict, NotWaiting
from services.common.workflow.specs import LATEST_FOR, DiagramError, SpecRepository, read_sources

SUBMITTED_AT = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc).isoformat()


def submission(case_no="210902-20261102-0001", description="楼上漏水，天花板一直滴水", category=""):
    return {"case_no": case_no, "district": "210902", "name": "张三", "phone": "13800001234",
            "description": description, "category": category, "channel": "web", "location": "",
            "submitted_at": SUBMITTED_AT, "latitude": None, "longitude": None, "photos": []}


def deliver(service, body):
    with service.uow() as uow:
        taken = service.runtime.deliver(uow, "intake.case_submitted", body, body["case_no"])
        uow.commit()
    return taken


def items(service, **filters):
    with service.uow() as uow:
        query = select(WorkItem).filter_by(**filters)
        return uow.session.scalars(query).all()


def outbox(service, routing_key):
    with service.uow() as uow:
        return uow.session.scalars(select(OutboxMessage).where(OutboxMessage.routing_key == routing_key)).all()


@pytest.fixture
def dispatch(build_service):
    return build_service("dispatch")


@pytest.mark.parametrize("description, category, expected", [
    ("楼上漏水，天花板一直滴水", "", "zhujian"),
    ("小区门口占道经营", "", "chengguan"),
    ("公交站牌损坏", "traffic", "jiaotong"),
    ("想咨询一下办事流程", "", ""),
])
def test_dmn_suggests_department(dispatch, description, category, expected):
    assert deliver(dispatch, submission(description=description, category=category)) == 1
    [item] = items(dispatch, task_name="assign")
    assert item.district == "210902"
    assert item.summary["suggested_department"] == expected


def test_the_dmn_engines_syntax_check_answers_the_same_every_time(dispatch):
    # SpiffWorkflow's DMN engine asks validate() whether an entry parses, to decide whether it
    # needs "==" (a SyntaxError means an operator entry such as "> 5"); the answer is cached.
    engine = dispatch.runtime.engine
    for _ in range(2):
        engine.validate('"漏水" in description')
        with pytest.raises(SyntaxError):
            engine.validate("> 5")


def test_assign_moves_case_to_department_and_throws_message(dispatch):
    deliver(dispatch, submission())
    [item] = items(dispatch, task_name="assign")
    with dispatch.uow() as uow:
        dispatch.runtime.complete(uow, item.id, {"action": "assign", "department": "zhujian",
                                                 "department_name": "市住建局"}, actor="海州区分拨员")
        uow.commit()
    [accept] = items(dispatch, task_name="accept")
    assert accept.department == "zhujian"
    [message] = outbox(dispatch, "dispatch.case_assigned")
    assert message.envelope["body"]["summary"] == "市住建局"
    with dispatch.uow() as uow:
        titles = [t.title for t in uow.session.scalars(select(TimelineEntry).order_by(TimelineEntry.id))]
    assert titles == ["登记诉求", "分拨交办"]


def test_assign_deadline_fires_once_from_the_diagram_timer(dispatch):
    deliver(dispatch, submission())
    dispatch.clock.advance(timedelta(hours=23))
    assert dispatch.runtime.fire_due_timers(dispatch.uow) == 0
    dispatch.clock.advance(timedelta(hours=1, seconds=1))
    assert dispatch.runtime.fire_due_timers(dispatch.uow) == 1
    assert dispatch.runtime.fire_due_timers(dispatch.uow) == 0
    [missed] = outbox(dispatch, "dispatch.deadline_missed")
    assert missed.envelope["body"] == {"case_no": "210902-20261102-0001", "stage": "assign"}
    # The task is still waiting for the dispatcher (non-interrupting timer).
    assert len(items(dispatch, task_name="assign")) == 1
    # Completing the task afterwards does not replay the breach.
    [item] = items(dispatch, task_name="assign")
    with dispatch.uow() as uow:
        dispatch.runtime.complete(uow, item.id, {"action": "assign", "department": "zhujian", "department_name": "x"}, actor="a")
        uow.commit()
    assert len(outbox(dispatch, "dispatch.deadline_missed")) == 1


def test_acting_on_a_page_that_is_out_of_date_gets_a_conflict(dispatch):
    deliver(dispatch, submission())
    [item] = items(dispatch, task_name="assign")
    with dispatch.uow() as uow:
        seen_version = uow.session.get(WorkflowInstance, item.instance_id).version
    dispatch.clock.advance(timedelta(days=2))
    dispatch.runtime.fire_due_timers(dispatch.uow)  # the case changes while the page is open
    with dispatch.uow() as uow, pytest.raises(Conflict, match="请刷新"):
        dispatch.runtime.complete(uow, item.id, {"action": "assign", "department": "zhujian", "department_name": "x"},
                                  actor="a", expected_version=seen_version)
    assert len(items(dispatch, task_name="assign")) == 1


def test_instances_store_state_without_the_spec(dispatch):
    deliver(dispatch, submission())
    with dispatch.uow() as uow:
        instance = uow.session.scalars(select(WorkflowInstance)).one()
    assert "spec" not in instance.state and "subprocess_specs" not in instance.state
    assert instance.state["state_version"] == "fzt-1"


def work_item_queries(service):
    """Context: the SELECTs of work items that ``service`` sends meanwhile (a list)."""
    seen = []

    def record(_conn, _cursor, statement, *_args):
        if statement.startswith("SELECT") and "FROM work_items" in statement:
            seen.append(statement)

    @contextmanager
    def recording():
        event.listen(service.engine, "before_cursor_execute", record)
        try:
            yield seen
        finally:
            event.remove(service.engine, "before_cursor_execute", record)
    return recording()


def test_work_items_are_known_from_the_saved_state_without_a_query(build_service):
    """Work items are the READY user tasks of the state saved last: a delivery to an instance
    that only waits for messages (intake's usual case) does not look them up, nor does
    completing the one a person is working on (it is in the session already)."""
    from services.intake.requests import submit_request
    intake = build_service("intake")
    case_no = submit_request(intake, {"district": "210902", "name": "张三", "phone": "13800001234",
                                      "description": "楼上漏水很严重"}).case_no

    def arrive(message_type, **body):
        with work_item_queries(intake) as queries, intake.uow() as uow:
            assert intake.runtime.deliver(uow, message_type, {"case_no": case_no, **body}, case_no) == 1
            uow.commit()
        return len(queries)

    assert arrive("dispatch.case_assigned", department="zhujian") == 0
    assert arrive("dispatch.case_handled", department="zhujian", reply="已处理") == 0  # makes "rate"
    assert [i.task_name for i in items(intake)] == ["rate"]
    assert arrive("dispatch.case_reopened", department="zhujian") == 1  # withdraws it: looked up
    assert items(intake) == []

    dispatch = build_service("dispatch")
    deliver(dispatch, submission())
    [item] = items(dispatch, task_name="assign")
    with work_item_queries(dispatch) as queries, dispatch.uow() as uow:
        dispatch.runtime.complete(uow, item.id, {"action": "assign", "department": "zhujian",
                                                 "department_name": "市住建局"}, actor="分拨员")
        uow.commit()
    assert len(queries) == 1  # complete() finding the item; the refresh after the step reuses it
    assert [(i.task_name, i.department) for i in items(dispatch)] == [("accept", "zhujian")]


def test_a_version_deployed_by_another_process_starts_new_cases_within_latest_for(dispatch):
    now = [100.0]
    dispatch.runtime.specs = dispatch.specs = SpecRepository(
        "dispatch", dispatch.settings.bpmn_dir, dispatch.clock, monotonic=lambda: now[0])
    deliver(dispatch, submission("210902-20261102-0001"))
    sources = read_sources(dispatch.settings.bpmn_dir, "dispatch")
    sources["dispatch.bpmn"] = sources["dispatch.bpmn"].replace("workdays_duration(1)", "workdays_duration(2)", 1)
    other_process = SpecRepository("dispatch", dispatch.settings.bpmn_dir, dispatch.clock)
    with dispatch.uow() as uow:
        new_hash, created = other_process.deploy(uow.session, dispatch.definition.service_tasks.names(),
                                                 set(dispatch.definition.forms), sources)
        uow.commit()
    assert created
    now[0] += LATEST_FOR / 2
    deliver(dispatch, submission("210902-20261102-0002"))  # still the version it looked up
    now[0] += LATEST_FOR / 2
    deliver(dispatch, submission("210902-20261102-0003"))  # looked up again: the new one
    with dispatch.uow() as uow:
        hashes = {i.case_no[-4:]: i.spec_hash for i in uow.session.scalars(select(WorkflowInstance))}
    assert hashes["0001"] == hashes["0002"] != new_hash
    assert hashes["0003"] == new_hash


def test_running_cases_keep_their_version_new_cases_take_the_latest(dispatch):
    deliver(dispatch, submission("210902-20261102-0001"))
    sources = read_sources(dispatch.settings.bpmn_dir, "dispatch")
    # The assign deadline (the first timer in the file) from one working day to two.
    sources["dispatch.bpmn"] = sources["dispatch.bpmn"].replace("workdays_duration(1)", "workdays_duration(2)", 1)
    new_hash, created = dispatch.deploy(sources)
    assert created
    deliver(dispatch, submission("210902-20261102-0002"))
    with dispatch.uow() as uow:
        hashes = {i.case_no: (i.spec_hash, i.next_timer_at) for i in uow.session.scalars(select(WorkflowInstance))}
    old, new = hashes["210902-20261102-0001"], hashes["210902-20261102-0002"]
    assert old[0] != new_hash and new[0] == new_hash
    assert new[1] - old[1] == timedelta(days=1)  # the edited deadline, with no code change
    dispatch.clock.advance(timedelta(days=1, seconds=1))
    assert dispatch.runtime.fire_due_timers(dispatch.uow) == 1  # only the old-version case
    # Deploying the original diagram again makes it live again.
    assert dispatch.deploy() == (old[0], True)
    deliver(dispatch, submission("210902-20261102-0003"))
    with dispatch.uow() as uow:
        third = uow.session.scalars(select(WorkflowInstance).where(
            WorkflowInstance.case_no == "210902-20261102-0003")).one()
    assert third.spec_hash == old[0]


@pytest.mark.parametrize("edit, problem", [
    (lambda x: x.replace("del submission", "import os"), "Import is not allowed"),
    (lambda x: x.replace("del submission", "x = open('/etc/passwd')"), "name 'open'"),
    (lambda x: x.replace("workdays_duration(1)", '__import__("os")'), "name '__import__'"),
    (lambda x: x.replace('<bpmn:userTask id="resolve"', '<bpmn:userTask id="resolve_x"')
                .replace('targetRef="resolve"', 'targetRef="resolve_x"')
                .replace('sourceRef="resolve"', 'sourceRef="resolve_x"')
                .replace('attachedToRef="resolve"', 'attachedToRef="resolve_x"'), "no form for user task"),
    (lambda x: x.replace('<bpmn:sequenceFlow id="f_closed_end" sourceRef="case_closed" targetRef="handled"/>',
                         '<bpmn:sequenceFlow id="f_closed_end" sourceRef="case_closed" targetRef="s" />'
                         '<bpmn:sequenceFlow id="flow_s" sourceRef="s" targetRef="handled" />'
                         "<bpmn:serviceTask id='s' name='s'><bpmn:extensionElements>"
                         "<spiffworkflow:serviceTaskOperator id='no_such_handler' /></bpmn:extensionElements>"
                         "</bpmn:serviceTask>"), "unknown handler.*no_such_handler"),
    (lambda x: x.replace("<bpmn:process", "<bpmn:broken"), "diagram validation failed"),
])
def test_invalid_diagrams_are_refused_and_nothing_is_stored(dispatch, edit, problem):
    sources = read_sources(dispatch.settings.bpmn_dir, "dispatch")
    sources["dispatch.bpmn"] = edit(sources["dispatch.bpmn"])
    with dispatch.uow() as uow:
        before = uow.session.scalar(select(func.count()).select_from(DeployedSpec))
    with pytest.raises(DiagramError, match=problem):
        dispatch.deploy(sources)
    with dispatch.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(DeployedSpec)) == before


def test_unparsable_dmn_is_refused(dispatch):
    sources = read_sources(dispatch.settings.bpmn_dir, "dispatch")
    sources["route_department.dmn"] = sources["route_department.dmn"].replace('"漏水" in ?', '"漏水" in ? or')
    with pytest.raises(DiagramError, match="DMN"):
        dispatch.deploy(sources)


def test_a_caught_message_nobody_waits_for_is_refused_not_dropped(build_service):
    intake = build_service("intake")
    with intake.uow() as uow, pytest.raises(NotWaiting, match="dispatch.case_assigned"):
        intake.runtime.deliver(uow, "dispatch.case_assigned",
                               {"case_no": "210902-20261102-0009", "department": "zhujian"}, "210902-20261102-0009")


def test_work_items_carry_their_deadline_for_the_badges(dispatch):
    deliver(dispatch, submission())
    [item] = items(dispatch, task_name="assign")
    with dispatch.uow() as uow:
        instance = uow.session.get(WorkflowInstance, item.instance_id)
    assert item.due_at == instance.next_timer_at == dispatch.clock.now() + timedelta(days=1)
    assert item.deadline_state(dispatch.clock.now()) == "ok"
    assert item.deadline_state(dispatch.clock.now() + timedelta(hours=21)) == "near"
    assert item.deadline_state(dispatch.clock.now() + timedelta(days=1)) == "overdue"


def test_intake_follows_dispatch_events_in_any_order_and_count(build_service):
    from services.intake.requests import submit_request
    intake = build_service("intake")
    case_no = submit_request(intake, {"district": "210902", "name": "张三", "phone": "13800001234",
                                      "description": "楼上漏水很严重"}).case_no
    events = [
        ("dispatch.mediation_requested", {"district": "210902", "description": "纠纷", "name": "张三",
                                          "phone": "13800001234", "summary": "综治中心将联系您进行调解"}),
        ("dispatch.case_assigned", {"department": "zhujian", "summary": "市住建局"}),
        ("dispatch.case_returned", {"department": "zhujian", "reason": "不归我管", "return_count": 1}),
        ("dispatch.case_assigned", {"department": "gongan", "summary": "市公安局"}),
        ("dispatch.case_accepted", {"department": "gongan", "first_owner": "gongan", "summary": "市公安局"}),
        ("dispatch.case_extended", {"department": "gongan", "days": 3, "due": "2026-11-16T09:00:00+00:00",
                                    "reason": "需协调", "summary": "办理时限延长3个工作日"}),
        ("dispatch.case_handled", {"department": "gongan", "reply": "已处理", "summary": "已处理"}),
    ]
    for message_type, body in events:
        with intake.uow() as uow:
            assert intake.runtime.deliver(uow, message_type, {"case_no": case_no, **body}, case_no) == 1
            uow.commit()
    with intake.uow() as uow:
        public = [(t.title, t.detail) for t in uow.session.scalars(
            select(TimelineEntry).where(TimelineEntry.public.is_(True)).order_by(TimelineEntry.id))]
        instance = uow.session.scalars(select(WorkflowInstance)).one()
    assert public == [("诉求已提交，等待分拨", ""), ("已转综治中心调解", "综治中心将联系您进行调解"), ("已交办", "市住建局"),
                      ("已交办", "市公安局"), ("已受理", "市公安局"), ("办理时限延长", "办理时限延长3个工作日"),
                      ("已答复", "已处理")]
    assert instance.status == "waiting"  # for the citizen's rating (tests/unit/test_satisfaction.py)
    with intake.uow() as uow:
        assert [i.task_name for i in uow.session.scalars(select(WorkItem))] == ["rate"]


@pytest.mark.parametrize("message_type, stage", [("dispatch.deadline_missed", "accept"),
                                                 ("mediation.deadline_missed", "mediate")])
def test_supervision_gets_an_urging_task_for_every_missed_deadline(build_service, message_type, stage):
    supervision = build_service("supervision")
    with supervision.uow() as uow:
        supervision.runtime.deliver(uow, message_type, {"case_no": "C-9", "stage": stage}, "C-9")
        uow.commit()
    with supervision.uow() as uow:
        [item] = uow.session.scalars(select(WorkItem)).all()
    assert (item.task_name, item.case_no, item.summary["stage"]) == ("urge", "C-9", stage)


def test_a_broken_instance_is_set_aside_and_does_not_block_other_timers(dispatch):
    deliver(dispatch, submission("210902-20261102-0001"))
    deliver(dispatch, submission("210902-20261102-0002"))
    with dispatch.uow() as uow:
        broken = uow.session.scalars(select(WorkflowInstance).where(
            WorkflowInstance.case_no == "210902-20261102-0001")).one()
        broken.state = {**broken.state, "tasks": {}}  # corrupt state: loading it fails
        uow.commit()
    dispatch.clock.advance(timedelta(days=1, seconds=1))
    assert dispatch.runtime.fire_due_timers(dispatch.uow) == 1  # the healthy case still fires
    with dispatch.uow() as uow:
        broken = uow.session.get(WorkflowInstance, broken.id)
    assert broken.status == "error" and broken.error
    assert dispatch.runtime.fire_due_timers(dispatch.uow) == 0  # set aside, not retried forever


def test_every_reporter_of_a_merged_case_gets_the_reply(build_service):
    from services.common.bus.messages import make_envelope
    from services.intake.models import CitizenRequest
    from services.intake.requests import submit_request
    intake = build_service("intake")
    first = submit_request(intake, {"district": "210902", "name": "张三", "phone": "13800001234",
                                    "description": "楼上漏水很严重"})
    second = submit_request(intake, {"district": "210902", "name": "李四", "phone": "13900001234",
                                     "description": "同一栋楼漏水"})

    def arrive(message_type, case_no, **body):
        intake.apply_message(make_envelope(message_type, {"case_no": case_no, **body}, "dispatch",
                                           intake.clock.now()))

    arrive("dispatch.case_merged", second.case_no, into=first.case_no, summary="已合并办理")
    arrive("dispatch.case_assigned", first.case_no, department="zhujian", summary="市住建局")
    arrive("dispatch.case_handled", first.case_no, department="zhujian", reply="已修复漏水点", summary="已修复漏水点")
    with intake.uow() as uow:
        statuses = {r.case_no: r.status for r in uow.session.scalars(select(CitizenRequest))}
        second_public = [(t.title, t.detail) for t in uow.session.scalars(
            select(TimelineEntry).where(TimelineEntry.case_no == second.case_no, TimelineEntry.public.is_(True))
            .order_by(TimelineEntry.id))]
    assert statuses == {first.case_no: "handled", second.case_no: "handled"}
    assert second_public[-2:] == [("已合并办理", "已合并办理"), ("已答复", "已修复漏水点")]
