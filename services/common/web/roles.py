"""The staff roles: identifier, Chinese name and which scope an account of the role carries.

Citizens have no account (anonymous + tracking code). What each role may do is the table in
docs/security.md and, per route, ``RULES`` in tests/unit/test_route_matrix.py; the data scope
(district, department) is checked by each service's ``cases.may_read`` / ``may_work``.
The identifiers of the first seven roles predate this table and stay as they are (stored in
every ``staff_users.role``), so no data migration is needed.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    name: str  # shown in the UI
    scope: str | None = None  # "district" | "department" | None (city-wide)
    scope_required: bool = False


ROLES = {
    "intake_operator": Role("受理员"),  # hotline, phone and walk-in requests typed in by staff
    "grid_worker": Role("网格员", "district", scope_required=True),  # files on a citizen's behalf
    "dispatcher": Role("分拨员", "district"),  # no district: city level, every district
    "handler": Role("部门办理人", "department", scope_required=True),
    "chief": Role("首席办事员"),
    "mediator": Role("调解员", "district"),
    "reception": Role("中心接待员", "district"),  # one-window reception of the center
    "supervisor": Role("督办员"),
    "leader": Role("领导", "district"),  # read only; no district: every district
    "process_designer": Role("流程设计员"),
    "admin": Role("系统管理员"),
}

ROLE_NAMES = {key: role.name for key, role in ROLES.items()}

# Roles that read across their scope but never act on a case (no work items, no reveal).
READ_ONLY_ROLES = ("supervisor", "leader")


def scope_problem(role: str, district: str | None, department: str | None) -> str | None:
    """Why this role/scope combination is wrong, or None. Codes are checked by the caller."""
    spec = ROLES.get(role)
    if spec is None:
        return "未知的角色"
    if district and spec.scope != "district":
        return f"{spec.name}不按县区划分，请不要选择县区"
    if department and spec.scope != "department":
        return f"{spec.name}不属于某个部门，请不要选择部门"
    if spec.scope_required and not (district or department):
        return f"{spec.name}必须选择{'所属县区' if spec.scope == 'district' else '所属部门'}"
    return None
