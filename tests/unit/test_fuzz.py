"""Schemathesis against the OpenAPI documents of intake and dispatch, in process (WSGI, SQLite):
valid and invalid requests for every operation, each answer checked against the document
(no 5xx, documented status, content type and body; invalid input refused). Bounded and
deterministic (Hypothesis ``derandomize``, ``FZT_FUZZ_EXAMPLES`` examples per operation and
mode, default 6) so it stays well under a minute; set FZT_FUZZ_EXAMPLES=300 for a long run.
Findings of the long runs: docs/security.md, "Fuzzing"."""
from __future__ import annotations

import os

from sqlalchemy import select

from services.common.config import RateLimitSettings
from services.common.demo import load_demo_accounts
from services.common.models import OutboxMessage
from services.common.web.app import create_app, prefixed
from services.common.web.auth import make_token
from tests.support.fuzz import fuzz

EXAMPLES = int(os.environ.get("FZT_FUZZ_EXAMPLES", "6"))
# The fuzzer explores the API, not the limits (tested in tests/unit/test_rate_limits.py): with
# them on, most of a long run would be answered 429.
NO_LIMITS = {"rate_limits": RateLimitSettings(enabled=False)}
CITIZEN = {"district": "海州区", "name": "张三", "phone": "13800001234", "description": "楼上漏水，天花板一直滴水"}


def report(findings) -> str:
    return "\n".join(str(f) for f in findings)


def test_intake_api_survives_the_fuzzer(build_service):
    app = create_app(build_service("intake", **NO_LIMITS))
    findings, answers = fuzz(prefixed({"intake": app}), "/intake/api/v1/openapi.json", max_examples=EXAMPLES)
    assert not findings, report(findings)
    assert answers["POST /api/v1/requests 201"] and answers["POST /api/v1/requests 400"], answers


def test_dispatch_api_survives_the_fuzzer(build_service):
    intake, dispatch = build_service("intake", **NO_LIMITS), build_service("dispatch", **NO_LIMITS)
    load_demo_accounts(dispatch)
    created = create_app(intake).test_client().post("/api/v1/requests", json=CITIZEN).get_json()
    with intake.uow() as uow:
        dispatch.apply_message(uow.session.scalars(select(OutboxMessage)).one().envelope)
    app = create_app(dispatch)
    token = {"Authorization": f"Bearer {make_token(app.config['SECRET_KEY'], 'admin')}"}
    wsgi = prefixed({"dispatch": app})
    findings, answers = fuzz(wsgi, "/dispatch/api/v1/openapi.json", headers=token, max_examples=EXAMPLES)
    # again on a real case, so that acts get past "no such case" into validation and the workflow
    more, real = fuzz(wsgi, "/dispatch/api/v1/openapi.json", headers=token, max_examples=EXAMPLES,
                      path_parameters={"case_no": created["case_no"]})
    assert not findings + more, report(findings + more)
    assert answers["GET /api/v1/cases 200"] and real["GET /api/v1/cases/{case_no} 200"], (answers, real)
