"""Workflow state without its spec: the spec is stored once per deployed version.

SpiffWorkflow's serializer writes the whole spec (≈ 11 KB) into every instance. Our
converter leaves it out and is handed the parsed spec back when loading. The stored state
carries ``serializer_version`` so that data migrations can be written when it changes.
"""
from __future__ import annotations

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

STATE_VERSION = "fzt-1"


class _StateOnlyConverter(BpmnWorkflowConverter):
    def to_dict(self, workflow):
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct):
        # "spec" and "subprocess_specs" hold parsed objects here; restore() passes them through.
        return super().from_dict(dct)


_config = dict(SPIFF_CONFIG)
_config[BpmnWorkflow] = _StateOnlyConverter
_serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(_config))


def dump_state(workflow) -> dict:
    state = _serializer.to_dict(workflow)
    state["state_version"] = STATE_VERSION
    return state


def load_state(state: dict, process, script_engine) -> BpmnWorkflow:
    dct = {k: v for k, v in state.items() if k != "state_version"}
    dct["subprocesses"] = dict(state.get("subprocesses", {}))  # from_dict pops from it
    dct["spec"] = process.spec
    dct["subprocess_specs"] = process.subprocess_specs
    workflow = _serializer.from_dict(dct)
    workflow.script_engine = script_engine
    return workflow
