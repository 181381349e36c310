"""回访 (satisfaction callback, S19): the reporter rates the reply 满意 / 基本满意 / 不满意.

The flow is bpmn/intake.bpmn's (docs/satisfaction.md): after each reply the reporter has the
user task ``rate`` (online, on the status page); when its timer fires it becomes ``callback``
for a callback operator. Either is completed here; the diagram's service task
``record_rating`` (task register_rating) then asks ``rate_reply`` what the rating means for the case dispatch
handles, and routes on the answer.

Several reporters (requests merged into one case) are asked separately; the rule:

* each reporter's own rating closes the case *for them* (their status 已办结), whatever the
  others say;
* any 不满意 reopens the case (the first one of a reply sends ``intake.case_reopened``; a
  second one of the same reply joins it);
* dispatch closes the case (``intake.case_closed``) only when the reply is still being rated
  and every reporter of the case is closed.

The decision reads the other reporters' rows, so it takes a row lock on the case's own
request first: two reporters rating at once are decided one after the other.
"""
from __future__ import annotations

from flask_wtf import FlaskForm
from sqlalchemy import func, or_, select
from wtforms import RadioField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from services.common import audit
from services.common.bus.messages import RATINGS
from services.common.models import WorkItem
from services.common.workflow.runtime import NotWaiting, TaskNotFound

from .models import CitizenRequest, SatisfactionRating

RATING_NAMES = dict(zip(RATINGS, ("满意", "基本满意", "不满意")))
RATING_TASKS = ("rate", "callback")
CALLBACK_ROLES = ("intake_operator",)  # and admin: who calls citizens and enters their rating
SOURCE_NAMES = {"online": "网上评价", "callback": "电话回访"}
# The case's own request: "rating" while its latest reply is rated, "reopened" after a
# 不满意 sent it back, "closed" once dispatch was told to close it.
RATING, REOPENED, CLOSED = "rating", "reopened", "closed"


class RatingForm(FlaskForm):
    rating = RadioField("评价", choices=list(RATING_NAMES.items()),
                        validators=[DataRequired("请选择满意、基本满意或不满意")])
    comment = TextAreaField("意见或建议", validators=[Length(max=500, message="不超过500个字")])

    def validate_comment(self, field):
        field.data = (field.data or "").strip()
        if self.rating.data == "unsatisfied" and not field.data:
            raise ValidationError("选择“不满意”时，请说明哪里不满意，以便部门重新办理")


class CallbackForm(RatingForm):
    """The operator's form: the same fields, on the 回访 work list."""


# -- the rule -------------------------------------------------------------------------------

def rate_reply(uow, case_no: str, rating: str, comment: str, source: str, actor: str, now,
               dissatisfied: bool) -> dict:
    """Record a reporter's rating and decide what it does to the case dispatch handles:
    ``outcome`` is ``reopen``, ``join`` (reopened already), ``close_case`` or ``closed``
    (closed for this reporter only)."""
    if rating not in RATINGS:
        raise ValueError(f"unknown rating {rating!r}")
    reporter = uow.session.get(CitizenRequest, case_no)
    if reporter is None:
        raise LookupError(f"no citizen request {case_no}")
    case_no_of_case = reporter.merged_into or reporter.case_no
    uow.session.flush()  # populate_existing re-reads the locked row: nothing pending may be lost
    case = uow.session.get(CitizenRequest, case_no_of_case, with_for_update=True, populate_existing=True)
    uow.add(SatisfactionRating(case_no=reporter.case_no, dispatch_case_no=case.case_no,
                               reply_round=case.reply_round, rating=rating, comment=comment or "",
                               source=source, actor=actor or "", at=now))
    if dissatisfied:
        reporter.status = "reopened"
        outcome = "join"
        if case.callback_phase == RATING:
            case.callback_phase, outcome = REOPENED, "reopen"
    else:
        reporter.status = "closed"
        outcome = "closed"
        if case.callback_phase == RATING and _others_open(uow.session, case.case_no, reporter.case_no) == 0:
            case.callback_phase, outcome = CLOSED, "close_case"
    return {"dispatch_case_no": case.case_no, "outcome": outcome, "rating_name": RATING_NAMES[rating]}


def _reporters(case_no: str):
    return or_(CitizenRequest.case_no == case_no, CitizenRequest.merged_into == case_no)


def _others_open(session, case_no: str, reporter: str) -> int:
    return session.scalar(select(func.count()).select_from(CitizenRequest).where(
        _reporters(case_no), CitizenRequest.case_no != reporter, CitizenRequest.status != "closed"))


def record_rating_task(ctx, rating, comment="", source="online", actor="", dissatisfied=False) -> dict:
    """Service task ``record_rating`` (bpmn/intake.bpmn); its result is ``verdict``."""
    return rate_reply(ctx.uow, ctx.case_no, rating, comment, source, actor, ctx.clock.now(), bool(dissatisfied))


# -- following dispatch -----------------------------------------------------------------------

def reply_received(session, case_no: str) -> None:
    """dispatch.case_handled: a new reply of the case is now being rated."""
    session.flush()
    case = session.get(CitizenRequest, case_no, with_for_update=True, populate_existing=True)
    if case is not None:
        case.reply_round += 1
        case.callback_phase = RATING


def relay_to_merged(service, uow, envelope) -> list[str]:
    """Hand a dispatch message about a case to the requests merged into it: each reporter's
    own instance of intake.bpmn follows the case (reply, reopen, close). An instance that is
    not waiting for it (e.g. a reporter already rating) is left alone. Returns who took it."""
    took = []
    for merged in uow.session.scalars(select(CitizenRequest).where(CitizenRequest.merged_into == envelope["case_no"])):
        body = {**envelope["body"], "case_no": merged.case_no}
        try:
            service.runtime.deliver(uow, envelope["type"], body, merged.case_no)
        except NotWaiting:
            continue
        took.append(merged.case_no)
    return took


# -- completing the rating task --------------------------------------------------------------

class NotRatable(LookupError):
    """The case is not waiting for a rating (not replied yet, or rated already)."""


def open_rating_item(session, case_no: str):
    return session.scalars(select(WorkItem).where(WorkItem.case_no == case_no,
                                                  WorkItem.task_name.in_(RATING_TASKS))).first()


def submit_rating(service, case_no: str, rating: str, comment: str, operator=None) -> None:
    """Complete the case's rating task: the citizen online (``operator`` None; audited as
    ``intake.rate``) or a callback operator (a staff user; ``intake.callback``)."""
    source = "online" if operator is None else "callback"
    actor = "" if operator is None else operator.display_name
    with service.uow() as uow:
        item = open_rating_item(uow.session, case_no)
        if item is None:
            raise NotRatable(case_no)
        note = RATING_NAMES[rating] + (f"：{comment}" if comment else "")
        try:
            service.runtime.complete(uow, item.id, {"rating": rating, "rating_comment": comment or "",
                                                    "rating_source": source, "rated_by": actor},
                                     actor=actor or "诉求人", note=note, audited=True)
        except TaskNotFound:
            raise NotRatable(case_no) from None
        audit.record(uow, operator or "诉求人", "intake.callback" if operator else "intake.rate", case_no,
                     rating=rating)
        uow.commit()


# -- reading ---------------------------------------------------------------------------------

def callback_list(service, limit=200):
    """(callback items after the deadline, items still waiting for the citizen), oldest first,
    each with its request."""
    with service.uow() as uow:
        items = uow.session.scalars(select(WorkItem).where(WorkItem.task_name.in_(RATING_TASKS))
                                    .order_by(WorkItem.created_at).limit(limit)).all()
        requests = {r.case_no: r for r in uow.session.scalars(
            select(CitizenRequest).where(CitizenRequest.case_no.in_([i.case_no for i in items])))}
    rows = [(item, requests.get(item.case_no)) for item in items]
    return ([r for r in rows if r[0].task_name == "callback"], [r for r in rows if r[0].task_name == "rate"])


def ratings_of(session, case_no: str):
    """Every rating given on this request, and on requests merged into it, oldest first."""
    return session.scalars(select(SatisfactionRating).where(or_(
        SatisfactionRating.case_no == case_no, SatisfactionRating.dispatch_case_no == case_no))
        .order_by(SatisfactionRating.at, SatisfactionRating.id)).all()
