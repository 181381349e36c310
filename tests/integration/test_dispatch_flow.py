"""Every branch of bpmn/dispatch.bpmn, driven through services/dispatch/cases.py on real
PostgreSQL with the injectable clock (no sleeping for deadlines)."""
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.common.clock import FrozenClock
from services.common.models import OutboxMessage, WorkItem
from services.common.workflow.runtime import Conflict
from services.dispatch import cases
from tests.support.users import User


DISPATCHER = User("dispatcher", district="210902", display_name="海州区分拨员")
OTHER_DISPATCHER = User("dispatcher", district="210911")
ZHUJIAN, GONGAN, CHENGGUAN = (User("handler", department=d) for d in ("zhujian", "gongan", "chengguan"))
CHIEF = User("chief", display_name="首席办事员")
CASE = "210902-20261102-0001"


@pytest.fixture
def dispatch(pg_service):
    service = pg_service("dispatch", clock=FrozenClock())
    with service.uow() as uow:
        service.runtime.deliver(uow, "intake.case_submitted", {
            "case_no": CASE, "district": "210902", "name": "张三", "phone": "13800001234",
            "description": "楼上漏水，天花板一直滴水", "category": "", "channel": "web", "location": "",
            "submitted_at": "2026-11-02T09:00:00+00:00"}, CASE)
        uow.commit()
    return service


def waiting(service):
    with service.uow() as uow:
        return [(i.task_name, i.department) for i in uow.session.scalars(select(WorkItem))]


def sent(service, message_type=None):
    with service.uow() as uow:
        rows = uow.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    return [r.envelope["body"] for r in rows if message_type in (None, r.routing_key)]


def test_assign_accept_resolve_records_first_inquiry_owner(dispatch):
    cases.assign(dispatch, DISPATCHER, CASE, "zhujian", co_departments=["chengguan", "zhujian"])
    assert waiting(dispatch) == [("accept", "zhujian")]
    cases.accept(dispatch, ZHUJIAN, CASE)
    assert waiting(dispatch) == [("resolve", "zhujian")]
    [accepted] = sent(dispatch, "dispatch.case_accepted")
    assert accepted["first_owner"] == "zhujian"
    cases.reply(dispatch, ZHUJIAN, CASE, "已联系物业修复漏水点")
    assert waiting(dispatch) == []
    [handled] = sent(dispatch, "dispatch.case_handled")
    assert handled["reply"] == "已联系物业修复漏水点"
    record = cases.case_record(dispatch, CASE)
    assert record["data"]["co_departments"] == ["chengguan"]  # the lead is not its own co-handler
    assert record["instance"].status == "waiting"  # for the citizen's rating (docs/satisfaction.md)
    assert "await_rating" in record["active"]
    titles = [(t.title, t.detail) for t in record["timeline"]]
    assert ("部门办理", "已联系物业修复漏水点") in titles


def test_scope_and_roles_are_enforced(dispatch):
    with pytest.raises(cases.NotAllowed):
        cases.assign(dispatch, OTHER_DISPATCHER, CASE, "zhujian")
    with pytest.raises(cases.NotAllowed):
        cases.assign(dispatch, ZHUJIAN, CASE, "zhujian")
    with pytest.raises(cases.Invalid):
        cases.assign(dispatch, DISPATCHER, CASE, "no_such_department")
    cases.assign(dispatch, DISPATCHER, CASE, "zhujian")
    with pytest.raises(cases.NotAllowed):
        cases.accept(dispatch, GONGAN, CASE)  # not this department's case
    with pytest.raises(cases.NoSuchTask):
        cases.reply(dispatch, ZHUJIAN, CASE, "还没受理就答复")


def test_three_returns_go_to_fallback_which_cannot_be_returned(dispatch):
    for department, user in (("zhujian", ZHUJIAN), ("gongan", GONGAN), ("zhujian", ZHUJIAN)):
        cases.assign(dispatch, DISPATCHER, CASE, department)
        cases.return_case(dispatch, user, CASE, "不属于本部门职责")
    assert waiting(dispatch) == [("fallback", "zhujian")]
    returns = sent(dispatch, "dispatch.case_returned")
    assert [r["return_count"] for r in returns] == [1, 2, 3]
    cases.designate(dispatch, DISPATCHER, CASE, "chengguan", co_departments=["zhujian"])
    with pytest.raises(cases.Invalid, match="不能退回"):
        cases.return_case(dispatch, CHENGGUAN, CASE, "还是不归我们")
    cases.accept(dispatch, CHENGGUAN, CASE)
    assert waiting(dispatch) == [("resolve", "chengguan")]
    [accepted] = sent(dispatch, "dispatch.case_accepted")
    assert accepted["first_owner"] == "chengguan"


def test_returned_case_keeps_the_first_inquiry_owner(dispatch):
    cases.assign(dispatch, DISPATCHER, CASE, "zhujian")
    cases.accept(dispatch, ZHUJIAN, CASE)
    assert cases.case_record(dispatch, CASE)["data"]["first_owner"] == "zhujian"


def test_claim_pool_first_claim_wins_and_expiry_returns_to_dispatcher(dispatch):
    cases.send_to_pool(dispatch, DISPATCHER, CASE)
    assert waiting(dispatch) == [("claim", None)]
    dispatch.clock.advance(timedelta(days=1, minutes=1))
    assert dispatch.runtime.fire_due_timers(dispatch.uow) == 1
    assert [t for t, _ in waiting(dispatch)] == ["assign"]  # unclaimed: back to the dispatcher
    cases.send_to_pool(dispatch, DISPATCHER, CASE)
    cases.claim(dispatch, GONGAN, CASE)
    assert waiting(dispatch) == [("accept", "gongan")]
    with pytest.raises(cases.NoSuchTask):
        cases.claim(dispatch, ZHUJIAN, CASE)


def test_two_departments_claiming_at_once_one_wins(dispatch):
    cases.send_to_pool(dispatch, DISPATCHER, CASE)
    outcomes = race(lambda: cases.claim(dispatch, ZHUJIAN, CASE), lambda: cases.claim(dispatch, GONGAN, CASE))
    assert sorted(outcomes)[1:] == ["ok"] and sorted(outcomes)[0] in ("Conflict", "NoSuchTask"), outcomes
    [(task, department)] = waiting(dispatch)
    assert task == "accept" and department in ("zhujian", "gongan")
    assert len(sent(dispatch, "dispatch.case_assigned")) == 1


def test_two_dispatchers_assigning_at_once_one_wins(dispatch):
    outcomes = race(lambda: cases.assign(dispatch, DISPATCHER, CASE, "zhujian"),
                    lambda: cases.assign(dispatch, DISPATCHER, CASE, "gongan"))
    assert sorted(outcomes)[1:] == ["ok"] and sorted(outcomes)[0] in ("Conflict", "NoSuchTask"), outcomes
    assert len(sent(dispatch, "dispatch.case_assigned")) == 1


def test_chief_handler_instructs_key_case(dispatch):
    cases.send_to_chief(dispatch, DISPATCHER, CASE, note="涉及多个部门，群众反映强烈")
    assert waiting(dispatch) == [("chief_instruction", None)]
    with pytest.raises(cases.NotAllowed):
        cases.instruct(dispatch, DISPATCHER, CASE, "zhujian", "请住建局牵头")
    cases.instruct(dispatch, CHIEF, CASE, "zhujian", "请住建局牵头，城管配合，三日内办结",
                   co_departments=["chengguan"])
    assert waiting(dispatch) == [("accept", "zhujian")]
    data = cases.case_record(dispatch, CASE)["data"]
    assert data["key_case"] is True and data["chief_instruction"].startswith("请住建局牵头")
    with dispatch.uow() as uow:
        item = uow.session.scalars(select(WorkItem)).one()
    assert item.summary["key_case"] is True  # marked in every work list


def test_reject_tells_the_citizen_why(dispatch):
    with pytest.raises(cases.Invalid):
        cases.reject(dispatch, DISPATCHER, CASE, "  ")
    cases.reject(dispatch, DISPATCHER, CASE, "咨询类问题，已电话解答")
    assert waiting(dispatch) == []
    [rejected] = sent(dispatch, "dispatch.case_rejected")
    assert rejected["summary"].endswith("咨询类问题，已电话解答")


@pytest.mark.parametrize("stage, act", [
    ("assign", lambda s: None),
    ("accept", lambda s: cases.assign(s, DISPATCHER, CASE, "zhujian")),
    ("resolve", lambda s: (cases.assign(s, DISPATCHER, CASE, "zhujian"), cases.accept(s, ZHUJIAN, CASE))),
])
def test_each_stage_deadline_is_reported_once(dispatch, stage, act):
    act(dispatch)
    # Working days from Monday 2026-11-02 17:00 (Shanghai): 1 → Tuesday; 7 → Wednesday next week.
    days = {"assign": 1, "accept": 1, "resolve": 9}[stage]
    dispatch.clock.advance(timedelta(days=days) - timedelta(minutes=1))
    dispatch.runtime.fire_due_timers(dispatch.uow)
    assert [m for m in sent(dispatch, "dispatch.deadline_missed") if m["stage"] == stage] == []
    dispatch.clock.advance(timedelta(minutes=2))
    dispatch.runtime.fire_due_timers(dispatch.uow)
    dispatch.runtime.fire_due_timers(dispatch.uow)
    assert [m["stage"] for m in sent(dispatch, "dispatch.deadline_missed")] == [stage]


def race(*acts):
    """Run the acts at the same moment in threads; returns 'ok' or the exception's class name."""
    barrier = threading.Barrier(len(acts))
    outcomes = []

    def run(act):
        barrier.wait(5)
        try:
            act()
            outcomes.append("ok")
        except (Conflict, cases.NoSuchTask) as err:
            outcomes.append(type(err).__name__)

    threads = [threading.Thread(target=run, args=(a,)) for a in acts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return outcomes


def mediated(service, outcome, result):
    from services.common.bus.messages import make_envelope
    service.apply_message(make_envelope("mediation.case_mediated", {
        "case_no": CASE, "outcome": outcome, "result": result, "summary": result}, "mediation", service.clock.now()))


def test_mediation_without_agreement_comes_back_then_agreement_closes_the_case(dispatch):
    cases.send_to_mediation(dispatch, DISPATCHER, CASE, "邻里纠纷，适合调解")
    assert waiting(dispatch) == []  # the on-site center has it
    [request] = sent(dispatch, "dispatch.mediation_requested")
    assert request["reason"] == "邻里纠纷，适合调解" and request["district"] == "210902"
    mediated(dispatch, "no_agreement", "双方未达成一致")
    assert [t for t, _ in waiting(dispatch)] == ["assign"]  # back to the dispatcher
    cases.send_to_mediation(dispatch, DISPATCHER, CASE)
    mediated(dispatch, "agreement", "双方同意由楼上住户维修，费用各半")
    assert waiting(dispatch) == []
    [handled] = sent(dispatch, "dispatch.case_handled")
    assert handled["reply"] == "双方同意由楼上住户维修，费用各半" and handled["department"] == "center"
    assert "await_rating" in cases.case_record(dispatch, CASE)["active"]  # 回访 next


def test_approved_extension_moves_the_resolve_deadline_refused_keeps_it(dispatch):
    cases.assign(dispatch, DISPATCHER, CASE, "zhujian")
    cases.accept(dispatch, ZHUJIAN, CASE)

    def due():
        with dispatch.uow() as uow:
            return uow.session.scalars(select(WorkItem).where(WorkItem.task_name == "resolve")).one().due_at

    first_due = due()
    with pytest.raises(cases.Invalid):
        cases.request_extension(dispatch, ZHUJIAN, CASE, 0, "需要协调")
    cases.request_extension(dispatch, ZHUJIAN, CASE, 3, "需协调物业和施工队")
    assert waiting(dispatch) == [("approve_extension", "zhujian")]
    with pytest.raises(cases.NotAllowed):
        cases.decide_extension(dispatch, OTHER_DISPATCHER, CASE, True)
    with pytest.raises(cases.Invalid):
        cases.decide_extension(dispatch, DISPATCHER, CASE, False)  # refusing needs a reason
    cases.decide_extension(dispatch, DISPATCHER, CASE, True)
    second_due = due()
    # Due Wednesday 11-11; three more working days (Thu, Fri, Mon) → Monday 11-16.
    assert second_due - first_due == timedelta(days=5)
    [extended] = sent(dispatch, "dispatch.case_extended")
    assert extended["days"] == 3
    cases.request_extension(dispatch, ZHUJIAN, CASE, 5, "材料未到")
    cases.decide_extension(dispatch, DISPATCHER, CASE, False, "时限不能再延")
    assert due() == second_due
    assert len(sent(dispatch, "dispatch.case_extended")) == 1
    # The resolve deadline now fires at the moved date, once.
    dispatch.clock.advance(second_due - dispatch.clock.now() + timedelta(seconds=1))
    dispatch.runtime.fire_due_timers(dispatch.uow)
    assert [m["stage"] for m in sent(dispatch, "dispatch.deadline_missed") if m["stage"] == "resolve"] == ["resolve"]


def test_lead_and_co_handlers_add_notes_others_may_not(dispatch):
    cases.assign(dispatch, DISPATCHER, CASE, "zhujian", co_departments=["chengguan"])
    cases.add_note(dispatch, ZHUJIAN, CASE, "已约物业明天上门查看")
    cases.add_note(dispatch, CHENGGUAN, CASE, "已安排执法队员配合")
    with pytest.raises(cases.NotAllowed):
        cases.add_note(dispatch, GONGAN, CASE, "与我无关")
    with pytest.raises(cases.Invalid):
        cases.add_note(dispatch, ZHUJIAN, CASE, "   ")
    entries = [(t.title, t.detail, t.public) for t in cases.case_record(dispatch, CASE)["timeline"]
               if t.title in ("办理记录", "协办意见")]
    assert entries == [("办理记录", "已约物业明天上门查看", False), ("协办意见", "已安排执法队员配合", False)]
    assert waiting(dispatch) == [("accept", "zhujian")]  # a note is not a step


def test_a_dispatcher_sitting_on_an_extension_request_is_reported(dispatch):
    cases.assign(dispatch, DISPATCHER, CASE, "zhujian")
    cases.accept(dispatch, ZHUJIAN, CASE)
    cases.request_extension(dispatch, ZHUJIAN, CASE, 2, "需协调")
    with dispatch.uow() as uow:
        item = uow.session.scalars(select(WorkItem).where(WorkItem.task_name == "approve_extension")).one()
    assert item.due_at == dispatch.clock.now() + timedelta(days=1)  # Monday → Tuesday, same time
    dispatch.clock.advance(timedelta(days=1, minutes=1))
    dispatch.runtime.fire_due_timers(dispatch.uow)
    assert [m["stage"] for m in sent(dispatch, "dispatch.deadline_missed")] == ["approve_extension"]
    assert waiting(dispatch) == [("approve_extension", "zhujian")]  # still waiting for the decision


def test_a_duplicate_is_merged_into_the_open_case(dispatch):
    other = "210902-20261102-0002"
    with dispatch.uow() as uow:
        dispatch.runtime.deliver(uow, "intake.case_submitted", {
            "case_no": other, "district": "210902", "name": "李四", "phone": "13900001234",
            "description": "同一栋楼漏水", "category": "", "channel": "phone", "location": "",
            "submitted_at": "2026-11-02T09:30:00+00:00"}, other)
        uow.commit()
    with pytest.raises(cases.Invalid, match="不存在或已办结"):
        cases.merge(dispatch, DISPATCHER, other, "210902-20261102-0099")
    with pytest.raises(cases.Invalid):
        cases.merge(dispatch, DISPATCHER, other, other)
    cases.merge(dispatch, DISPATCHER, other, CASE)
    [merged] = sent(dispatch, "dispatch.case_merged")
    assert merged["case_no"] == other and merged["into"] == CASE
    assert [t for t, _ in waiting(dispatch)] == ["assign"]  # only the case it was merged into
    assert cases.case_record(dispatch, other)["instance"].status == "complete"


def co_handler_rows(service):
    """dispatch's co_handlers rows of the case: (department, the task its work item is at)."""
    from services.dispatch.models import CoHandler
    with service.uow() as uow:
        return [tuple(r) for r in uow.session.execute(
            select(CoHandler.department, WorkItem.task_name).join(WorkItem, WorkItem.id == CoHandler.work_item_id,
                                                                  isouter=True)
            .where(CoHandler.case_no == CASE).order_by(CoHandler.department))]


def rated(service, message_type, rating, comment=""):
    from services.common.bus.messages import make_envelope
    service.apply_message(make_envelope(message_type, {
        "case_no": CASE, "reporter_case_no": CASE, "rating": rating, "comment": comment}, "intake",
        service.clock.now()))


def test_the_co_handler_table_follows_the_case_from_assignment_to_closing(dispatch):
    cases.assign(dispatch, DISPATCHER, CASE, "zhujian", co_departments=["chengguan", "gongan"])
    assert co_handler_rows(dispatch) == [("chengguan", "accept"), ("gongan", "accept")]
    [item], total = cases.co_handled(dispatch, "chengguan")
    assert (item.case_no, item.task_name, total) == (CASE, "accept", 1)
    assert cases.co_handled(dispatch, "zhujian") == ([], 0)  # the lead's own case
    cases.return_case(dispatch, ZHUJIAN, CASE, "不属于本部门职责")
    assert co_handler_rows(dispatch) == []  # back with the dispatcher: in no department's hands
    cases.assign(dispatch, DISPATCHER, CASE, "gongan", co_departments=["zhujian"])  # co-handlers change
    assert co_handler_rows(dispatch) == [("zhujian", "accept")]
    assert cases.co_handled(dispatch, "chengguan") == ([], 0)
    cases.accept(dispatch, GONGAN, CASE)
    cases.request_extension(dispatch, GONGAN, CASE, 2, "需协调")
    assert co_handler_rows(dispatch) == [("zhujian", "approve_extension")]  # each step's item
    cases.decide_extension(dispatch, DISPATCHER, CASE, True)
    assert co_handler_rows(dispatch) == [("zhujian", "resolve")]
    cases.reply(dispatch, GONGAN, CASE, "已协调处理")
    assert co_handler_rows(dispatch) == []  # replied: waiting for the citizen's rating
    rated(dispatch, "intake.case_reopened", "unsatisfied", "还是没有处理好")
    assert co_handler_rows(dispatch) == [("zhujian", "resolve")]  # reopened: the same helpers
    [item], _ = cases.co_handled(dispatch, "zhujian")
    assert item.summary["citizen_comment"] == "还是没有处理好"
    cases.reply(dispatch, GONGAN, CASE, "已彻底修复")
    rated(dispatch, "intake.case_closed", "satisfied")
    assert cases.case_record(dispatch, CASE)["instance"].status == "complete"
    assert co_handler_rows(dispatch) == [] and cases.co_handled(dispatch, "zhujian") == ([], 0)
