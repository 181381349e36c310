"""Diagrams: read from bpmn/, validate, deploy by content hash, load a deployed version.

A service owns the processes in ``bpmn/<service>.bpmn`` and ``bpmn/<service>_*.bpmn``; DMN
tables in ``bpmn/*.dmn`` are shared. Deploy refuses a diagram set with any problem (parse
error, unknown service-task handler, user task without a form, script or expression outside
the whitelist) and stores nothing in that case.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent
from SpiffWorkflow.bpmn.specs.mixins.script_task import ScriptTask
from SpiffWorkflow.bpmn.specs.mixins.service_task import ServiceTask
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from sqlalchemy import func, select

from ..models import DeployedSpec
from .sandbox import ScriptRejected, compile_restricted


class DiagramError(Exception):
    """A diagram set that must not be deployed; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("图表校验失败 (diagram validation failed):\n  " + "\n  ".join(problems))


@dataclass
class ProcessSpec:
    hash: str
    process_id: str
    spec: object
    subprocess_specs: dict
    message_starts: set[str] = field(default_factory=set)
    message_catches: set[str] = field(default_factory=set)


def read_sources(bpmn_dir: Path, service: str) -> dict[str, str]:
    files = [bpmn_dir / f"{service}.bpmn", *sorted(bpmn_dir.glob(f"{service}_*.bpmn")),
             *sorted(bpmn_dir.glob("*.dmn"))]
    return {f.name: f.read_text(encoding="utf-8") for f in files if f.exists()}


def content_hash(sources: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return digest.hexdigest()


def parse(sources: dict[str, str], process_id: str) -> ProcessSpec:
    """Parse diagram sources; raises DiagramError with the parser's message."""
    return _parse_cached(content_hash(sources), tuple(sorted(sources.items())), process_id)


@lru_cache(maxsize=64)
def _parse_cached(hash_, items, process_id) -> ProcessSpec:
    parser = SpiffBpmnParser()
    try:
        for name, text in items:
            if name.endswith(".dmn"):
                parser.add_dmn_str(text.encode(), filename=name)
            else:
                parser.add_bpmn_str(text.encode(), filename=name)
        spec = parser.get_spec(process_id)
        subprocess_specs = parser.get_subprocess_specs(process_id)
    except Exception as err:  # the parser raises many types; all mean "not deployable"
        raise DiagramError([f"{type(err).__name__}: {err}"]) from None
    result = ProcessSpec(hash_, process_id, spec, subprocess_specs)
    for task_spec in _all_task_specs(result):
        if not isinstance(task_spec, CatchingEvent):
            continue
        target = result.message_starts if isinstance(task_spec, StartEvent) else result.message_catches
        # An event-based gateway holds its branches' definitions in a MultipleEventDefinition.
        definition = getattr(task_spec, "event_definition", None)
        for each in getattr(definition, "event_definitions", [definition]):
            if isinstance(each, MessageEventDefinition):
                target.add(each.name)
    return result


def _all_task_specs(process: ProcessSpec):
    for spec in [process.spec, *process.subprocess_specs.values()]:
        yield from spec.task_specs.values()


def validate(process: ProcessSpec, handler_names, form_names) -> None:
    problems = []

    def check(where, source, mode="eval"):
        if not source:
            return
        try:
            compile_restricted(source, mode)
        except ScriptRejected as err:
            problems.append(f"{where}: {err}")

    for ts in _all_task_specs(process):
        where = f"{ts.bpmn_id or ts.name} ({getattr(ts, 'bpmn_name', '') or ''})"
        if isinstance(ts, ScriptTask):
            check(where, ts.script, "exec")
        for attr in ("prescript", "postscript"):
            check(where, getattr(ts, attr, None), "exec")
        for condition, _target in getattr(ts, "cond_task_specs", []):
            # Gateway conditions are wrapped in an operator whose first argument is the text.
            check(where, getattr(condition, "args", [condition])[0] if condition is not None else None)
        definition = getattr(ts, "event_definition", None)
        if isinstance(definition, TimerEventDefinition):
            check(where, definition.expression)
        if isinstance(definition, MessageEventDefinition):
            check(where, getattr(definition, "expression", None))
        if isinstance(ts, ServiceTask):
            if ts.operation_name not in handler_names:
                problems.append(f"{where}: 未知的服务任务处理器 (unknown handler) '{ts.operation_name}'")
            for param in ts.operation_params.values():
                check(where, param["value"])
        if isinstance(ts, UserTask) and ts.bpmn_id not in form_names:
            problems.append(f"{where}: 用户任务缺少表单 (no form for user task) '{ts.bpmn_id}'")
        engine = getattr(ts, "dmnEngine", None)
        if engine is not None:
            table = engine.decision_table
            for inp in table.inputs:
                check(f"{where} DMN input {inp.label}", inp.expression)
            for rule in table.rules:
                for entry in rule.inputEntries:
                    for lhs in entry.lhs:
                        if lhs:
                            check(f"{where} DMN row {rule.row_number}",
                                  lhs.replace("?", "dmninputexpr") if "?" in lhs else f"x == ({lhs})")
                for out in rule.outputEntries:
                    check(f"{where} DMN row {rule.row_number}", out.text)
    if problems:
        raise DiagramError(problems)


LATEST_FOR = 2.0  # seconds a process starts new instances on the latest version it looked up


class SpecRepository:
    """Deployed diagram versions of one service, parsed once per process.

    Which version is the latest is looked up at most every ``LATEST_FOR`` seconds (it was one
    query per submission and per new case): a version deployed by another process (the CLI,
    another web process) starts new cases there within that time; a deploy through this
    repository is used at once."""

    def __init__(self, service: str, bpmn_dir: Path, clock, monotonic=time.monotonic):
        self.service = service
        self.bpmn_dir = bpmn_dir
        self.clock = clock
        self.monotonic = monotonic
        self._latest: tuple[str, float] | None = None  # (hash, looked up at)

    def check(self, handler_names, form_names, sources=None) -> ProcessSpec:
        sources = sources if sources is not None else read_sources(self.bpmn_dir, self.service)
        if f"{self.service}.bpmn" not in sources:
            raise DiagramError([f"missing {self.service}.bpmn in {self.bpmn_dir}"])
        process = parse(sources, self.service)
        validate(process, handler_names, form_names)
        return process

    def deploy(self, session, handler_names, form_names, sources=None) -> tuple[str, bool]:
        """Validate and store the current diagrams; returns (hash, newly_deployed)."""
        sources = sources if sources is not None else read_sources(self.bpmn_dir, self.service)
        process = self.check(handler_names, form_names, sources)
        self._latest = None
        latest = session.scalar(select(func.max(DeployedSpec.version))
                                .where(DeployedSpec.process_id == self.service)) or 0
        existing = session.get(DeployedSpec, process.hash)
        if existing is None:
            session.add(DeployedSpec(hash=process.hash, process_id=self.service, version=latest + 1,
                                     sources=sources, deployed_at=self.clock.now()))
        elif existing.version == latest:
            return process.hash, False
        else:  # going back to an earlier diagram makes that version live again
            existing.version, existing.deployed_at = latest + 1, self.clock.now()
        return process.hash, True

    def latest(self, session) -> ProcessSpec:
        now = self.monotonic()
        if self._latest is None or now - self._latest[1] >= LATEST_FOR:
            # Only the hash: the sources are read once per version, in by_hash.
            spec_hash = session.scalars(
                select(DeployedSpec.hash).where(DeployedSpec.process_id == self.service)
                .order_by(DeployedSpec.version.desc()).limit(1)
            ).first()
            if spec_hash is None:
                raise LookupError(f"no diagram deployed for {self.service}: run `fzt bpmn deploy {self.service}`")
            self._latest = (spec_hash, now)
        return self.by_hash(session, self._latest[0])

    def by_hash(self, session, spec_hash: str) -> ProcessSpec:
        cached = _by_hash_cache.get(spec_hash)
        if cached is None:
            row = session.get(DeployedSpec, spec_hash)
            cached = _by_hash_cache[spec_hash] = parse(row.sources, row.process_id)
        return cached


_by_hash_cache: dict[str, ProcessSpec] = {}
