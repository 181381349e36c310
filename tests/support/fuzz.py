"""Schemathesis against a service's OpenAPI document, in process (WSGI), collecting findings.

``fuzz(wsgi, "/intake/api/v1/openapi.json", ...)`` loads the document through the app,
generates valid (positive) and invalid (negative) requests for every operation with
Hypothesis, sends them to the app and checks each answer: no 5xx, a documented status,
the documented content type and body schema, and invalid input refused. Findings are
returned (one per operation, mode and kind of failure), not raised, so a long run reports
them all. ``tests/unit/test_fuzz.py`` runs a bounded, deterministic pass; a long run:

    FZT_FUZZ_EXAMPLES=500 .venv/bin/python -m pytest -q tests/unit/test_fuzz.py
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import hypothesis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (content_type_conformance, negative_data_rejection, not_a_server_error,
                                 response_schema_conformance, status_code_conformance)
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode

# Unknown query parameters are ignored (as most APIs do), not refused; the bearer token is
# given by the caller, so the generator leaves the Authorization header alone.
CONFIG = """
[generation]
allow-extra-parameters = false
with-security-parameters = false
"""
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass(frozen=True)
class Finding:
    operation: str
    mode: str
    problem: str
    example: str  # a curl command that reproduces it (against the in-process app's paths)

    def __str__(self):
        return f"{self.operation} [{self.mode}] {self.problem}\n    {self.example}"


def fuzz(wsgi, document_path: str, *, headers=None, max_examples=25, path_parameters=None,
         skip=()) -> tuple[list[Finding], Counter]:
    """(findings, answers per "<operation> <status>"). ``path_parameters``: fixed values for some path parameters
    (a real case number, so that operations get past "not found"); ``skip``: operation labels."""
    schema = schemathesis.openapi.from_wsgi(document_path, wsgi, config=SchemathesisConfig.from_str(CONFIG))
    findings: dict[tuple, Finding] = {}
    answers: Counter = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in skip:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fixed = {k: v for k, v in (path_parameters or {}).items()
                     if any(p.name == k for p in operation.path_parameters)} or None
            checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

            @hypothesis.given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
            @settings(max_examples=max_examples, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck), phases=[hypothesis.Phase.generate])
            def run(case):
                response = case.call(headers=headers)
                answers[f"{operation.label} {response.status_code}"] += 1
                try:
                    case.validate_response(response, checks=checks, headers=headers)
                except (AssertionError, FailureGroup) as failure:
                    problem = str(failure).strip().splitlines()[0][:300]
                    key = (operation.label, mode.value, problem.split(":")[0])
                    findings.setdefault(key, Finding(operation.label, mode.value, _summary(failure),
                                                     case.as_curl_command(headers=headers)[:600]))

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing in this operation can be made invalid (e.g. no parameters)
    return list(findings.values()), answers


def _summary(failure) -> str:
    lines = [line.strip() for line in str(failure).splitlines() if line.strip()]
    return " | ".join(lines[:6])[:600]
