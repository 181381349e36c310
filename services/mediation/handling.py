"""Who handles a mediation case (接办), confidential cases (保密), and revealing the parties'
contact data — the rules, in one place (docs/security.md, "Personal data").

* A mediator who may mediate a case can take it: they become its mediator. Taking it, they
  may mark it confidential (e.g. a family or neighbourhood dispute with private details);
  later its mediator or a leader of the center may change that.
* A confidential case is seen only by its mediator and the center's leaders (role
  ``leader``: the county center's for their district, the city center's without one). Other
  mediators, the reception and system admins neither see it on the desk nor open it (404:
  its existence is not revealed), and only its mediator may mediate it.
* The parties' name and phone show masked; whoever may read the case and works cases
  (not leaders, who only read) can reveal them, each time audited (``pii.reveal``).

Every change is audited (``mediation.take``, ``mediation.confidential``) in the same
transaction.
"""
from __future__ import annotations

from sqlalchemy import select

from services.common import audit
from services.common.models import WorkItem

from .models import MediationHandling

LEADER = "leader"
READ_ONLY = ("leader", "supervisor")  # read, never act or reveal


class NotAllowed(PermissionError):
    pass


class NotOpen(LookupError):
    """The case has no open 调解 task (done, or never came)."""


def of(session, case_no) -> MediationHandling | None:
    return session.get(MediationHandling, case_no)


def confidential_cases(service, case_nos) -> dict[str, MediationHandling]:
    """The handling rows of the confidential ones among ``case_nos``."""
    with service.uow() as uow:
        return {h.case_no: h for h in uow.session.scalars(select(MediationHandling).where(
            MediationHandling.case_no.in_(list(case_nos)), MediationHandling.confidential.is_(True)))}


def _leader_in_scope(user, district) -> bool:
    return user.role == LEADER and (not user.district or user.district == district)


def may_see(user, handling, district) -> bool:
    """Confidentiality on top of the role and district rules (``cases.may_read``)."""
    if handling is None or not handling.confidential:
        return True
    return (user.role == "mediator" and user.username == handling.mediator) or _leader_in_scope(user, district)


def may_mediate(user, handling) -> bool:
    """A confidential case is mediated by its mediator only."""
    return handling is None or not handling.confidential or user.username == handling.mediator


def may_reveal(user) -> bool:
    return user.role not in READ_ONLY


def may_change_confidential(user, handling, district) -> bool:
    if handling is None:
        return False  # take the case first: a confidential case needs its mediator
    return user.username == handling.mediator or _leader_in_scope(user, district)


def take(service, user, case_no, confidential: bool, task_name, may_work) -> MediationHandling:
    """接办: ``user`` becomes the case's mediator. ``task_name`` is the 调解 task and
    ``may_work(user, item)`` its rule (services/mediation/cases.py)."""
    with service.uow() as uow:
        item = uow.session.scalars(select(WorkItem).where(
            WorkItem.case_no == case_no, WorkItem.task_name == task_name)).first()
        if item is None:
            raise NotOpen(f"案件 {case_no} 当前不在调解环节，可能已处理完毕")
        handling = of(uow.session, case_no)
        if user.role != "mediator" or not may_work(user, item) or not may_see(user, handling, item.district):
            raise NotAllowed("您无权接办该案件")
        if handling is not None and handling.mediator != user.username and handling.confidential:
            raise NotAllowed("该案件为保密案件，已由其他调解员接办")
        handling = handling or MediationHandling(case_no=case_no)
        handling.mediator, handling.mediator_name = user.username, user.display_name
        handling.confidential = bool(confidential)
        handling.updated_at = service.clock.now()
        uow.add(handling)
        audit.record(uow, user, "mediation.take", case_no, confidential=handling.confidential)
        uow.commit()
        return handling


def set_confidential(service, user, case_no, district, confidential: bool) -> None:
    with service.uow() as uow:
        handling = of(uow.session, case_no)
        if not may_change_confidential(user, handling, district):
            raise NotAllowed("只有承办调解员和中心领导可以设置保密")
        if handling.confidential == bool(confidential):
            return
        handling.confidential = bool(confidential)
        handling.updated_at = service.clock.now()
        audit.record(uow, user, "mediation.confidential", case_no, confidential=handling.confidential)
        uow.commit()
