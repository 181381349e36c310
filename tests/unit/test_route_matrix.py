"""Who may reach which route: one table (RULES) for every (service, endpoint, method).

For each of the four apps (SQLite, demo accounts) every rule of its ``url_map`` is requested
as every role: anonymous (no session, no token), and one demo account per staff role, logged
in through the real login form (pages) or with a bearer token (``/api/`` routes).

What "allowed" and "denied" mean here:

* denied:  401, 403, or a redirect to the login page that carries ``next=`` (what
  ``login_required`` / ``roles_required`` answer);
* allowed: anything else below 500: 2xx, a 3xx elsewhere, a 400 because the placeholder
  body is empty, or 404 "allowed, but no such record";
* hidden:  exactly 404, for roles that a data-scoped route answers with "not found" instead
  of 403 so as not to reveal that the record exists (``Rule(..., hidden=…)``);
* 5xx always fails.

Placeholders: ``<case_no>`` is a real case (a citizen request made through intake's API,
delivered to dispatch: 海州区, waiting for 交办; in mediation, the same case sent to 调解),
``<act>`` is ``reject``; POSTs carry a valid CSRF token (pages) and an otherwise empty body,
so nothing changes state and every allowed answer is a validation error or a redirect back.
The data-scoped answers below (e.g. only the 海州区 dispatcher reads the case) follow from that.

A route without a rule fails ``test_every_route_has_a_rule``: add the new endpoint to RULES
(say who may use it) in the same change that adds the route.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import url_for
from sqlalchemy import select

from services.common.bus.messages import make_envelope
from services.common.config import SERVICES
from services.common.demo import DEMO_PASSWORD, load_demo_accounts
from services.common.models import OutboxMessage
from services.common.web.app import create_app
from services.common.web.auth import make_token
from tests.support.http import csrf_token

# Every role of services/common/web/roles.py, and citizens (anonymous).
ROLES = ("anonymous", "admin", "dispatcher", "handler", "chief", "intake_operator", "supervisor", "mediator",
         "grid_worker", "reception", "leader", "process_designer")
ACCOUNTS = {"admin": "admin", "dispatcher": "fenbo_haizhou", "handler": "bm_zhujian", "chief": "chief",
            "intake_operator": "operator", "supervisor": "supervisor", "mediator": "mediator",
            "grid_worker": "wangge_haizhou", "reception": "jiedai", "leader": "leader",
            "process_designer": "designer"}
EVERYONE = frozenset(ROLES)
STAFF = EVERYONE - {"anonymous"}


def only(*roles):
    """These roles and admin (``roles_required`` always lets admin in)."""
    return frozenset({"admin", *roles})


@dataclass(frozen=True)
class Rule:
    allow: frozenset
    hidden: frozenset = frozenset()  # must get exactly 404 (existence not revealed)
    why: str = ""


PUBLIC = Rule(EVERYONE)
# Every app has these (services/common/web/app.py and auth.py).
COMMON_RULES = {
    ("static", "GET"): PUBLIC,
    ("auth.login", "GET"): PUBLIC,
    ("auth.login", "POST"): PUBLIC,
    ("auth.logout", "POST"): PUBLIC,  # ends the session if there is one
    ("auth.logout_all", "POST"): Rule(STAFF),
    ("home", "GET"): PUBLIC,  # a redirect to the service's start page, which has its own guard
    # Public in the app; the gateway (deploy/nginx.conf) does not expose /metrics and /readyz.
    ("healthz", "GET"): PUBLIC,
    ("readyz", "GET"): PUBLIC,
    ("metrics_endpoint", "GET"): PUBLIC,
    # Stuck work (services/common/web/ops.py): operators only.
    ("ops.stuck", "GET"): Rule(only()),
    ("ops.retry", "POST"): Rule(only()),
    ("ops.cancel", "POST"): Rule(only()),
    # Audit log of this service (services/common/audit.py): supervisors and admins.
    ("audit.search", "GET"): Rule(only("supervisor")),
    ("audit.export", "GET"): Rule(only("supervisor")),
    # Diagrams of this service (web/ops.py): process designers deploy them.
    ("ops.diagrams", "GET"): Rule(only("process_designer")),
    ("ops.deploy_diagrams", "POST"): Rule(only("process_designer")),
    # Own password (web/account.py), admin pages for this service's accounts (web/admin.py;
    # ``<username>`` is an account that does not exist, so no placeholder POST changes one).
    ("account.password", "GET"): Rule(STAFF),
    ("account.password", "POST"): Rule(STAFF),
    ("admin.users", "GET"): Rule(only()),
    ("admin.new_user", "GET"): Rule(only()),
    ("admin.new_user", "POST"): Rule(only()),
    ("admin.user", "GET"): Rule(only()),
    ("admin.user", "POST"): Rule(only()),
    ("admin.reset_password", "POST"): Rule(only()),
    ("admin.lock", "POST"): Rule(only()),
    ("admin.unlock", "POST"): Rule(only()),
    ("admin.end_sessions", "POST"): Rule(only()),
    # Single sign-on (web/oidc.py): 404 unless FZT_OIDC_ISSUER is set; the login itself.
    ("oidc.login", "GET"): PUBLIC,
    ("oidc.callback", "GET"): PUBLIC,
}

RULES = {
    "intake": {
        **COMMON_RULES,
        # citizens: no account
        ("citizen.submit", "GET"): PUBLIC,
        ("citizen.submit", "POST"): PUBLIC,
        ("citizen.submitted", "GET"): PUBLIC,
        ("citizen.status", "GET"): PUBLIC,
        ("citizen.status", "POST"): PUBLIC,
        ("citizen.rate", "POST"): PUBLIC,  # 回访 online: needs the tracking code
        # a photo of the request: only the browser that looked it up with the tracking code
        # (404 for everyone else, docs/uploads.md)
        ("citizen.photo", "GET"): PUBLIC,
        ("api.create_request", "POST"): PUBLIC,
        ("api.get_request", "GET"): PUBLIC,  # needs the tracking code
        ("openapi.spec", "GET"): PUBLIC,  # the API's OpenAPI document (services/intake/openapi.py)
        # Open311 GeoReport v2 (services/intake/open311.py): reading is public; POSTing a
        # request needs an api_key (the placeholder sends the development key), not a role.
        ("open311.discovery", "GET"): PUBLIC,
        ("open311.services", "GET"): PUBLIC,
        ("open311.service_definition", "GET"): PUBLIC,
        ("open311.create_request", "POST"): PUBLIC,
        ("open311.list_requests", "GET"): PUBLIC,
        ("open311.get_request", "GET"): PUBLIC,
        ("open311.token_lookup", "GET"): PUBLIC,
        ("open311.unknown", "GET"): PUBLIC,  # 404 in Open311's error format
        ("open311.unknown", "POST"): PUBLIC,
        # Publicity (services/intake/publicity.py): 典型案例 and 通知公告 are public; publishing
        # them is for 受理员 and 督办员; 受理量统计 (stats.py) also for dispatchers (own district).
        ("publicity.typical_list", "GET"): PUBLIC,
        ("publicity.typical_detail", "GET"): PUBLIC,
        ("publicity.typical_feed", "GET"): PUBLIC,
        ("publicity.notices", "GET"): PUBLIC,
        ("publicity.staff_home", "GET"): Rule(only("intake_operator", "supervisor", "dispatcher", "leader",
                                                  "grid_worker")),
        # 代为反映 (services/intake/filing.py): operators (phone, 12345, walk-in) and grid workers
        ("filing.file_request", "GET"): Rule(only("intake_operator", "grid_worker")),
        ("filing.file_request", "POST"): Rule(only("intake_operator", "grid_worker")),
        ("publicity.staff_typical", "GET"): Rule(only("intake_operator", "supervisor")),
        ("publicity.new_typical", "GET"): Rule(only("intake_operator", "supervisor")),
        ("publicity.new_typical", "POST"): Rule(only("intake_operator", "supervisor")),
        ("publicity.unpublish_typical", "POST"): Rule(only("intake_operator", "supervisor")),
        ("publicity.staff_notices", "GET"): Rule(only("intake_operator", "supervisor")),
        ("publicity.staff_notices", "POST"): Rule(only("intake_operator", "supervisor")),
        ("publicity.withdraw_notice_view", "POST"): Rule(only("intake_operator", "supervisor")),
        # 回访 (services/intake/callback_views.py): operators call and enter ratings (and
        # reveal the phone, audited); supervisors read a case's ratings and notifications.
        ("callback.work_list", "GET"): Rule(only("intake_operator")),
        ("callback.case_page", "GET"): Rule(only("intake_operator", "supervisor")),
        ("callback.rate_case", "POST"): Rule(only("intake_operator")),
        ("callback.reveal", "POST"): Rule(only("intake_operator")),
        ("stats.volume", "GET"): Rule(only("intake_operator", "supervisor", "dispatcher", "leader")),
        ("stats.volume_csv", "GET"): Rule(only("intake_operator", "supervisor", "dispatcher", "leader")),
    },
    "dispatch": {
        **COMMON_RULES,
        ("dispatch.start", "GET"): Rule(only("dispatcher", "handler", "chief"),
                                        why="roles without a dispatch work list get 403"),
        ("dispatch.queue", "GET"): Rule(only("dispatcher")),
        ("dispatch.pool", "GET"): Rule(only("handler")),
        ("dispatch.chief", "GET"): Rule(only("chief")),
        ("dispatch.inbox", "GET"): Rule(only("handler")),
        # a 海州区 case waiting for 交办: its district's dispatcher, supervisors and leaders (read
        # only) and admin
        ("dispatch.case", "GET"): Rule(only("dispatcher", "supervisor", "leader")),
        ("dispatch.case_diagram", "GET"): Rule(only("dispatcher", "supervisor", "leader")),
        # a photo or attachment of the case: whoever reads the case (404 if not its file)
        ("dispatch.case_file", "GET"): Rule(only("dispatcher", "supervisor", "leader")),
        # 显示完整号码 (audited): whoever reads the case, except supervisors (masked only)
        ("dispatch.reveal", "POST"): Rule(only("dispatcher")),
        # supervisors and leaders read the case, so the empty placeholder post is sent back to
        # it; a valid act is refused by cases.may_work (403, tests/unit/test_audit.py)
        ("dispatch.act_on_case", "POST"): Rule(only("dispatcher", "supervisor", "leader")),
        ("dispatch.assign", "POST"): Rule(only("dispatcher", "supervisor", "leader")),
        ("dispatch.bulk_assign", "POST"): Rule(only("dispatcher")),
        # 不是重复 (services/dispatch/duplicates.py): the district's dispatcher.
        ("dispatch.dismiss_duplicates", "POST"): Rule(only("dispatcher")),
        ("api.list_cases", "GET"): Rule(only("dispatcher"), why="default status=assign: dispatchers' list"),
        ("api.get_case", "GET"): Rule(only("dispatcher", "supervisor", "leader"),
                                      hidden=STAFF - only("dispatcher", "supervisor", "leader")),
        # login only at the route; the act's own check (cases.NotAllowed → 403) comes after
        # the body is valid, which the empty placeholder body is not
        ("api.act_on_case", "POST"): Rule(STAFF),
        ("openapi.spec", "GET"): PUBLIC,  # the API's OpenAPI document: no case data
    },
    "mediation": {
        **COMMON_RULES,
        # the center's reception and leaders read the desk and cases; only mediators mediate
        ("mediation.desk", "GET"): Rule(only("mediator", "reception", "leader")),
        ("mediation.case", "GET"): Rule(only("mediator", "reception", "leader")),
        ("mediation.mediate", "POST"): Rule(only("mediator")),
        # services/mediation/handling.py: reveal (audited) for readers who work cases; 接办 for
        # mediators (the placeholder POST lacks take=1: 400); 保密 only for a taken case's mediator
        # and the center's leaders, so nobody on the placeholder (not taken)
        ("mediation.reveal", "POST"): Rule(only("mediator", "reception")),
        ("mediation.take", "POST"): Rule(only("mediator")),
        ("mediation.confidential", "POST"): Rule(frozenset(), why="the placeholder case is not taken"),
    },
    "supervision": {
        **COMMON_RULES,
        ("supervision.board", "GET"): Rule(only("supervisor", "leader")),  # leaders read, no urge form
        ("supervision.urge", "POST"): Rule(only("supervisor")),
    },
}

CITIZEN = {"district": "海州区", "name": "张三", "phone": "13800001234", "description": "楼上漏水，天花板一直滴水"}
# Ending the session: requested last, each role's cookie put back in between.
SESSION_ENDING = (("auth.logout", "POST"), ("auth.logout_all", "POST"))


def routes(app):
    """(endpoint, method, rule) for every route of ``app`` (HEAD and OPTIONS are automatic)."""
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, rule


def bare_app(name, build_service):
    return create_app(build_service(name))


def test_every_route_has_a_rule_and_every_rule_a_route(build_service):
    missing, stale = [], []
    for name in SERVICES:
        app = bare_app(name, build_service)
        present = {(endpoint, method) for endpoint, method, _ in routes(app)}
        missing += [f"{name}: {e} {m}" for e, m in sorted(present - RULES[name].keys())]
        stale += [f"{name}: {e} {m}" for e, m in sorted(RULES[name].keys() - present)]
    assert not missing, ("routes without a rule in tests/unit/test_route_matrix.py RULES "
                         "(say which roles may use them):\n  " + "\n  ".join(missing))
    assert not stale, "rules for routes that no longer exist:\n  " + "\n  ".join(stale)


def test_every_rule_names_known_roles():
    for name, rules in RULES.items():
        for key, rule in rules.items():
            assert rule.allow <= EVERYONE and rule.hidden <= EVERYONE, (name, key)
            assert not rule.allow & rule.hidden, (name, key)


# -- requesting every route as every role ----------------------------------------------


def page_client(app, role):
    """A test client logged in as ``role`` through the login form (anonymous: not logged
    in), and a CSRF token valid for its session."""
    client = app.test_client()
    if role != "anonymous":
        token = csrf_token(client.get("/login").get_data(as_text=True))
        response = client.post("/login", data={"csrf_token": token, "username": ACCOUNTS[role],
                                               "password": DEMO_PASSWORD})
        assert response.status_code == 302 and "/login" not in response.headers["Location"], role
    return client, csrf_token(client.get("/login").get_data(as_text=True))


def classify(response) -> str:
    status = response.status_code
    if status >= 500:
        return "error"
    if status in (401, 403):
        return "denied"
    if 300 <= status < 400:
        target = urlsplit(response.headers.get("Location", ""))
        if target.path.endswith("/login") and "next" in parse_qs(target.query):
            return "denied"
    if status == 404:
        return "not_found"
    return "allowed"


def expected_outcomes(rule: Rule, role: str) -> set:
    if role in rule.hidden:
        return {"not_found"}
    if role in rule.allow:
        return {"allowed", "not_found"}
    return {"denied"}


def make_dispatch_case(build_service, dispatch) -> str:
    """A real case: a citizen request through intake's API, delivered to dispatch."""
    intake = build_service("intake")
    created = create_app(intake).test_client().post("/api/v1/requests", json=CITIZEN)
    assert created.status_code == 201
    with intake.uow() as uow:
        envelope = uow.session.scalars(select(OutboxMessage).where(
            OutboxMessage.routing_key == "intake.case_submitted")).one().envelope
    dispatch.apply_message(envelope)
    return created.get_json()["case_no"]


def make_mediation_case(mediation, case_no):
    body = {"case_no": case_no, "district": "210902", "description": "邻里因装修噪音多次争吵",
            "name": "张三", "phone": "13800001234", "reason": "邻里纠纷，先行调解",
            "summary": "转综治中心调解：邻里纠纷，先行调解"}
    mediation.apply_message(make_envelope("dispatch.mediation_requested", body, "dispatch",
                                          mediation.clock.now()))


# URL arguments every app may use; ``case_no`` (and Open311's ``token``) come from the
# real case each service gets in ``placeholders``. A new argument name needs an entry here.
URL_VALUES = {"filename": "fzt.css", "sha256": "0" * 64, "username": "no-such-user", "act": "reject", "fmt": "json", "service_code": "housing",
              "rest": "no-such-resource", "instance_id": 999999, "typical_id": 999999, "notice_id": 999999}


def placeholders(name, service, build_service):
    """(URL values, query string per endpoint, form data per endpoint) for service ``name``."""
    values, query, form = dict(URL_VALUES), {}, {}
    if name == "intake":
        from services.intake.open311 import DEV_API_KEY
        created = create_app(service).test_client().post("/api/v1/requests", json=CITIZEN).get_json()
        values["case_no"] = values["token"] = created["case_no"]
        query["api.get_request"] = {"tracking_code": created["tracking_code"]}
        form["open311.create_request"] = {"api_key": DEV_API_KEY}
    elif name == "dispatch":
        values["case_no"] = make_dispatch_case(build_service, service)
        form["dispatch.assign"] = {"case_no": values["case_no"]}
    elif name == "mediation":
        values["case_no"] = "210902-20261102-0001"
        make_mediation_case(service, values["case_no"])
    return values, query, form


@pytest.mark.parametrize("name", SERVICES)
def test_each_role_gets_what_the_table_says(name, build_service):
    service = build_service(name)
    load_demo_accounts(service)
    values, queries, forms = placeholders(name, service, build_service)
    app = create_app(service)
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    pairs, wrong = [], []
    with app.test_request_context():
        for endpoint, method, rule in routes(app):
            if (endpoint, method) not in RULES[name]:
                continue  # reported by test_every_route_has_a_rule_and_every_rule_a_route
            unknown = rule.arguments - values.keys()
            if unknown:
                wrong.append(f"{endpoint}: no placeholder for {', '.join(sorted(unknown))} (add to URL_VALUES)")
                continue
            pairs.append((endpoint, method, url_for(endpoint, **{k: values[k] for k in rule.arguments},
                                                    **queries.get(endpoint, {}))))
    pairs.sort(key=lambda p: (p[0], p[1]) in SESSION_ENDING)  # stable: logout, logout_all last
    for role in ROLES:
        client, csrf_token = page_client(app, role)
        saved_cookie = client.get_cookie(cookie_name)
        headers = {"Authorization": f"Bearer {make_token(app.config['SECRET_KEY'], ACCOUNTS[role])}"} \
            if role != "anonymous" else {}
        for endpoint, method, url in pairs:
            if (endpoint, method) in SESSION_ENDING and saved_cookie is not None:
                client.set_cookie(cookie_name, saved_cookie.value)  # logged in again for the next one
            if "/api/" in url:  # bearer token, no cookie
                response = app.test_client().open(url, method=method, headers=headers,
                                                  json={} if method == "POST" else None)
            elif method == "POST":
                response = client.post(url, data={"csrf_token": csrf_token, **forms.get(endpoint, {})})
            else:
                response = client.get(url)
            outcome = classify(response)
            allowed = expected_outcomes(RULES[name][endpoint, method], role)
            if outcome not in allowed:
                wrong.append(f"{role:<16} {method:<4} {url:<50} {response.status_code} "
                             f"({outcome}; table says {'/'.join(sorted(allowed))})")
    assert not wrong, f"{name}: answers that differ from RULES:\n  " + "\n  ".join(wrong)
