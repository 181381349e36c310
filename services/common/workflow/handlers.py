"""Named service-task handlers, the only code a diagram can call.

A handler is a plain function ``handler(ctx, **params) -> dict`` registered under the
operator name the diagram uses (spiffworkflow:serviceTaskOperator id). ``ctx`` carries the
unit of work, the instance and the clock, so a handler's effects commit with the step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class StepContext:
    uow: object
    instance: object
    clock: object
    service: str

    @property
    def case_no(self) -> str:
        return self.instance.case_no


class HandlerRegistry:
    def __init__(self):
        self._handlers: dict[str, Callable] = {}

    def service_task(self, name: str):
        def register(func):
            if name in self._handlers:
                raise ValueError(f"service task handler {name!r} registered twice")
            self._handlers[name] = func
            return func
        return register

    def names(self) -> set[str]:
        return set(self._handlers)

    def get(self, name: str) -> Callable:
        return self._handlers[name]
