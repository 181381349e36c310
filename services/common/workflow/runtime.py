"""The workflow runtime: start, advance and persist SpiffWorkflow instances.

Every change to an instance happens inside a unit of work: the engine steps run with the
platform clock, then ``_save`` writes the state (optimistic lock on ``version``), the work
items (ready user tasks), timeline entries, and the messages the diagram threw (to the
outbox) — all in one transaction.
"""
from __future__ import annotations

import ast
import contextvars
import json
import logging
import uuid
from functools import lru_cache

from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask
from SpiffWorkflow.exceptions import WorkflowException
from SpiffWorkflow.spiff.specs.event_definitions import MessageEventDefinition
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import delete, select
from sqlalchemy.orm.exc import StaleDataError

from ..bus.messages import make_envelope
from ..bus.relay import notify_outbox
from ..clock import use_clock
from ..db import Conflict
from ..models import DeployedSpec, OutboxMessage, TimelineEntry, WorkflowInstance, WorkItem
from .handlers import StepContext
from .sandbox import RestrictedEnvironment
from .serializer import dump_state, load_state

_step: contextvars.ContextVar[StepContext] = contextvars.ContextVar("fzt_step")
log = logging.getLogger(__name__)


class TaskNotFound(LookupError):
    pass


class NotWaiting(LookupError):
    """A message the diagram catches arrived for a case that is not waiting for it."""


@lru_cache(maxsize=4096)
def _syntax_error(expression: str) -> str | None:
    try:
        ast.parse(expression)
    except SyntaxError as err:
        return str(err)
    return None


class _ScriptEngine(PythonScriptEngine):
    def __init__(self, environment, handlers):
        super().__init__(environment)
        self.handlers = handlers

    def validate(self, expression):
        # SpiffWorkflow's DMN engine parses every rule's input and entry again at every
        # decision to see whether it parses; the answer is the same each time.
        error = _syntax_error(expression)
        if error is not None:
            raise SyntaxError(error)

    def call_service(self, task, operation_name, operation_params, **_):
        params = {name: p["value"] for name, p in operation_params.items()}
        try:
            result = self.handlers.get(operation_name)(_step.get(), **params)
            return json.dumps(result if result is not None else {})
        except Exception as err:
            # SpiffWorkflow 3.2.0 hides the cause behind a NameError; report it ourselves.
            raise WorkflowTaskException(
                f"服务任务 {operation_name} 失败: {type(err).__name__}: {err}", task=task, exception=err
            ) from err


class WorkflowRuntime:
    # Optional hook(uow, item, actor) called in the same unit of work when a person completes
    # a user task; create_app installs services/common/audit.py's (one audit entry per act).
    audit = None

    def __init__(self, service, specs, handlers, clock, summary_keys=(), helpers=None, work_items_changed=None):
        self.service = service
        self.specs = specs
        self.handlers = handlers
        self.clock = clock
        self.summary_keys = tuple(summary_keys)
        # hook(uow, case_no, before, after), ServiceDefinition.work_items_changed
        self.work_items_changed = work_items_changed
        self.engine = _ScriptEngine(RestrictedEnvironment(helpers), handlers)

    # -- entry points -------------------------------------------------------------------

    def start(self, uow, case_no: str, data: dict) -> WorkflowInstance:
        """Start the service's latest process at its none start event with ``data``."""
        process = self.specs.latest(uow.session)
        workflow = BpmnWorkflow(process.spec, process.subprocess_specs, script_engine=self.engine)
        workflow.data.update(data)
        for task in workflow.get_tasks(state=TaskState.READY):
            task.data.update(data)
        instance = self._new_instance(uow, case_no, process)
        self._advance(uow, instance, process, workflow)
        return instance

    def deliver(self, uow, message_type: str, body: dict, case_no: str) -> int:
        """Hand a bus message to this case's instances waiting for it, or start the process
        if its diagram starts on this message. Returns how many instances took it."""
        taken = 0
        for instance in uow.session.scalars(
            select(WorkflowInstance).where(
                WorkflowInstance.case_no == case_no, WorkflowInstance.status == "waiting"
            )
        ):
            process = self.specs.by_hash(uow.session, instance.spec_hash)
            if message_type not in process.message_catches:
                continue
            workflow = self._load(instance, process)
            try:
                workflow.send_event(self._event(message_type, body))
            except WorkflowException:
                continue  # this instance is not waiting for it right now
            self._advance(uow, instance, process, workflow, caught_summary=body.get("summary", ""))
            taken += 1
        if taken == 0:
            process = self.specs.latest(uow.session)
            if message_type in process.message_starts:
                workflow = BpmnWorkflow(process.spec, process.subprocess_specs, script_engine=self.engine)
                instance = self._new_instance(uow, case_no, process)
                with use_clock(self.clock):
                    workflow.do_engine_steps()
                workflow.catch(self._event(message_type, body))
                self._advance(uow, instance, process, workflow, caught_summary=body.get("summary", ""))
                taken = 1
            elif message_type in process.message_catches:
                # The diagram expects this message but no instance of the case waits for it
                # (yet): refuse, so it is retried and then dead-lettered, never silently lost.
                raise NotWaiting(f"{self.service}: no instance of case {case_no} waits for {message_type}")
        return taken

    def complete(self, uow, item_id: str, data: dict, actor: str, expected_version=None, note: str = "",
                 audited: bool = False):
        """Complete the user task ``item_id`` with form ``data`` on behalf of ``actor``;
        ``note`` is the timeline entry's detail (kept out of the case data). ``audited``: the
        caller records its own, more specific audit entry (else the ``audit`` hook does)."""
        item = uow.session.get(WorkItem, item_id)
        if item is None:
            raise TaskNotFound(item_id)
        instance = uow.session.get(WorkflowInstance, item.instance_id)
        if expected_version is not None and instance.version != expected_version:
            raise Conflict(instance.case_no)
        process = self.specs.by_hash(uow.session, instance.spec_hash)
        workflow = self._load(instance, process)
        task = workflow.get_task_from_id(uuid.UUID(item_id))
        if task is None or task.state != TaskState.READY:
            raise TaskNotFound(item_id)
        task.data.update(data)
        with use_clock(self.clock), _bind(StepContext(uow, instance, self.clock, self.service)):
            task.run()
        if self.audit is not None and not audited:
            self.audit(uow, item, actor)
        self._timeline_for(uow, instance, task, actor, note)
        self._advance(uow, instance, process, workflow, actor)
        return instance

    def fire_due_timers(self, uow_factory, limit: int = 100) -> int:
        """Fire every due timer once; safe with several workers (row lock or version check)."""
        fired = 0
        for _ in range(limit):
            with uow_factory() as uow:
                now = self.clock.now()
                instance = uow.session.scalars(
                    select(WorkflowInstance)
                    .where(WorkflowInstance.next_timer_at <= now, WorkflowInstance.status == "waiting")
                    .order_by(WorkflowInstance.next_timer_at).limit(1)
                    .with_for_update(skip_locked=True)
                ).first()
                if instance is None:
                    break
                instance_id, case_no = instance.id, instance.case_no
                try:
                    process = self.specs.by_hash(uow.session, instance.spec_hash)
                    workflow = self._load(instance, process)
                    self._advance(uow, instance, process, workflow)
                    uow.commit()
                    fired += 1
                except Conflict:
                    pass  # another worker fired it first
                except Exception as err:  # one broken instance must not stop every other timer
                    uow.rollback()
                    log.exception("timer of case %s failed; instance %s set aside as 'error'", case_no, instance_id)
                    self._set_aside(uow_factory, instance_id, err)
        return fired

    def retry(self, uow, instance_id: int) -> WorkflowInstance:
        """Run a set-aside instance again (after its cause was fixed, e.g. a new diagram
        version or data repaired); it fails again with the new reason if not."""
        instance = uow.session.get(WorkflowInstance, instance_id)
        if instance is None or instance.status != "error":
            raise TaskNotFound(f"instance {instance_id} is not waiting for a retry")
        process = self.specs.by_hash(uow.session, instance.spec_hash)
        self._advance(uow, instance, process, self._load(instance, process))
        return instance

    def cancel(self, uow, instance_id: int, reason: str, actor: str) -> WorkflowInstance:
        """Give up on a set-aside instance: it leaves every work list and timer, with the
        reason on the case's timeline."""
        instance = uow.session.get(WorkflowInstance, instance_id)
        if instance is None or instance.status != "error":
            raise TaskNotFound(f"instance {instance_id} is not waiting for a retry")
        instance.status, instance.next_timer_at = "cancelled", None
        instance.updated_at = self.clock.now()
        self._refresh_work_items(uow, instance, [], self.clock.now())
        uow.insert(TimelineEntry, case_no=instance.case_no, at=self.clock.now(), title="流程已撤销（运维）",
                   detail=reason[:500], actor=actor, public=False)
        return instance

    @staticmethod
    def _set_aside(uow_factory, instance_id, err):
        """Mark an instance whose step keeps failing as ``error`` (out of the timer sweep),
        with the reason, for the operators to fix and retry."""
        with uow_factory() as uow:
            instance = uow.session.get(WorkflowInstance, instance_id)
            instance.status, instance.error = "error", f"{type(err).__name__}: {err}"[:2000]
            uow.commit()

    def snapshot(self, session, instance) -> dict:
        """What staff see of an instance: the case data as the diagram sees it now (the
        latest completed task's data), the BPMN ids of the steps done and of those active."""
        process = self.specs.by_hash(session, instance.spec_hash)
        workflow = self._load(instance, process)
        if workflow.completed or workflow.last_task is None:
            data = dict(workflow.data)
        else:
            data = dict(workflow.last_task.data)
        visible = [t for t in workflow.get_tasks() if getattr(t.task_spec, "bpmn_id", None)]
        return {
            "data": data,
            "done": sorted({t.task_spec.bpmn_id for t in visible if t.state == TaskState.COMPLETED}),
            "active": sorted({t.task_spec.bpmn_id for t in visible
                              if t.state in (TaskState.READY, TaskState.WAITING, TaskState.STARTED)}),
        }

    def diagram_source(self, session, instance) -> str:
        """The BPMN XML of the version this instance runs on (for the diagram viewer)."""
        return session.get(DeployedSpec, instance.spec_hash).sources[f"{instance.process_id}.bpmn"]

    # -- internals ----------------------------------------------------------------------

    def _new_instance(self, uow, case_no, process) -> WorkflowInstance:
        now = self.clock.now()
        instance = WorkflowInstance(case_no=case_no, process_id=process.process_id,
                                    spec_hash=process.hash, status="running", state={},
                                    created_at=now, updated_at=now)
        uow.add(instance)  # inserted with its first state by _save's flush: one INSERT, no UPDATE
        return instance

    def _load(self, instance, process) -> BpmnWorkflow:
        return load_state(instance.state, process, self.engine)

    @staticmethod
    def _event(message_type, body):
        return BpmnEvent(MessageEventDefinition(message_type), payload=dict(body))

    def _advance(self, uow, instance, process, workflow, actor="", caught_summary=""):
        def did_complete(task):
            self._timeline_for(uow, instance, task, actor, caught_summary)

        with use_clock(self.clock), _bind(StepContext(uow, instance, self.clock, self.service)):
            workflow.refresh_timers()
            workflow.do_engine_steps(did_complete_task=did_complete)
        self._save(uow, instance, workflow)

    def _save(self, uow, instance, workflow):
        """Store the workflow's state, then make the work items match it."""
        now = self.clock.now()
        thrown = workflow.get_events()  # before dump_state, or they would be stored and thrown again
        # Work items are the READY user tasks of the state saved last (only _refresh_work_items
        # changes them, in the same transaction): their ids are known without a query.
        items_before = _ready_task_ids(instance.state)
        instance.state = dump_state(workflow)
        instance.status = "complete" if workflow.completed else "waiting"
        instance.updated_at = now
        instance.error = None
        due = [TimerEventDefinition.get_datetime(e.value) for e in workflow.waiting_events()
               if e.event_type.endswith(("TimerEventDefinition", "TimeDateEventDefinition"))
               and isinstance(e.value, str)]
        instance.next_timer_at = min(due) if due else None
        case_no = instance.case_no
        try:
            uow.session.flush()  # the version check: fails here if someone saved first
        except StaleDataError:
            uow.rollback()
            raise Conflict(case_no) from None
        messages = [e for e in thrown if isinstance(e.event_definition, MessageEventDefinition)]
        for event in messages:
            envelope = make_envelope(event.event_definition.name, event.payload or {},
                                     self.service, now)
            uow.insert(OutboxMessage, message_id=envelope["id"], routing_key=envelope["type"],
                       envelope=envelope, created_at=now)
        if messages:
            notify_outbox(uow.session)  # the relay wakes when this commits
        ready = [t for t in workflow.get_tasks(state=TaskState.READY) if isinstance(t.task_spec, UserTask)]
        self._refresh_work_items(uow, instance, ready, now, items_before)

    def _refresh_work_items(self, uow, instance, ready, now, items_before=None):
        """Make the instance's work items those of the ``ready`` user tasks. The only place
        work items change: the service's ``work_items_changed`` hook follows here, in the same
        transaction, whenever they did. ``items_before``: the ids it has now, if known."""
        before = self._work_items(uow.session, instance, items_before)
        ready_ids = {str(t.id) for t in ready}
        stale = [w.id for w in before if w.id not in ready_ids]
        if stale:
            uow.session.execute(delete(WorkItem).where(WorkItem.id.in_(stale)))
        existing = {w.id for w in before}
        made = []
        for task in ready:
            if str(task.id) in existing:
                continue
            data = task.data
            made.append(WorkItem(
                id=str(task.id), instance_id=instance.id, case_no=instance.case_no,
                task_name=task.task_spec.bpmn_id, title=task.task_spec.bpmn_name or task.task_spec.bpmn_id,
                lane=task.task_spec.lane, district=data.get("district"), department=data.get("department"),
                summary={k: data[k] for k in self.summary_keys if k in data}, created_at=now,
                due_at=_deadline_of(task),
            ))
        uow.session.add_all(made)
        if self.work_items_changed is not None and (stale or made):
            self.work_items_changed(uow, instance.case_no, before,
                                    [w for w in before if w.id in ready_ids] + made)

    @staticmethod
    def _work_items(session, instance, ids=None):
        """The instance's work items: none without a query if ``ids`` is empty (a new
        instance, or one waiting for a message), those already in the session if they all
        are (the one a person just completed), else one query."""
        if ids is not None:
            if not ids:
                return []
            held = [session.identity_map.get(session.identity_key(WorkItem, id_)) for id_ in ids]
            if all(item is not None for item in held):
                return held
        return session.scalars(select(WorkItem).where(WorkItem.instance_id == instance.id)).all()

    def _timeline_for(self, uow, instance, task, actor, detail=""):
        """Record a step if the diagram marks it (property ``timeline`` = public | staff).

        ``detail`` is a caught message's ``summary`` (worded by the sender's diagram) for
        catch events, or the note a person gave when completing a user task."""
        properties = getattr(task.task_spec, "extensions", {}).get("properties", {})
        visibility = properties.get("timeline")
        if visibility not in ("public", "staff") or task.state != TaskState.COMPLETED:
            return
        if not isinstance(task.task_spec, CatchingEvent):
            detail = detail if task.task_spec.manual else ""
        uow.insert(TimelineEntry, case_no=instance.case_no, at=self.clock.now(),
                   title=task.task_spec.bpmn_name or task.task_spec.bpmn_id,
                   detail=str(detail)[:500], actor=actor, public=visibility == "public")


def _ready_task_ids(state: dict) -> set[str]:
    """The READY tasks' ids of a stored state (``dump_state``'s dict, or ``{}`` for a new
    instance), in the process and in its subprocesses."""
    parts = [state, *state.get("subprocesses", {}).values()]
    return {id_ for part in parts for id_, task in part.get("tasks", {}).items() if task["state"] == TaskState.READY}


def _deadline_of(task):
    """The earliest timer attached to a user task (a boundary event sharing its split)."""
    if task.parent is None:
        return None
    due = [TimerEventDefinition.get_datetime(c.internal_data["event_value"]) for c in task.parent.children
           if c is not task and isinstance(getattr(c.task_spec, "event_definition", None), TimerEventDefinition)
           and isinstance(c.internal_data.get("event_value"), str)]
    return min(due) if due else None


class _bind:
    """Make the step context visible to service-task handlers while the engine runs."""

    def __init__(self, ctx):
        self.ctx = ctx

    def __enter__(self):
        self.token = _step.set(self.ctx)

    def __exit__(self, *exc):
        _step.reset(self.token)
