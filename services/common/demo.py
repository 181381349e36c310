"""Demo staff accounts for ``make run`` and the e2e tests (never for production)."""
from __future__ import annotations

from sqlalchemy import select

from .models import StaffUser
from .reference import DEPARTMENTS, DISTRICTS
from .web.auth import hash_password

DEMO_PASSWORD = "demo12345"
_DISTRICT_LOGINS = {"210902": "haizhou", "210903": "xinqiu", "210904": "taiping", "210905": "qinghemen",
                    "210911": "xihe", "210921": "fumeng", "210922": "zhangwu"}


def demo_accounts():
    """(username, display name, role, district, department)."""
    accounts = [("admin", "系统管理员", "admin", None, None),
                ("supervisor", "市督办员", "supervisor", None, None),
                ("chief", "市首席办事员", "chief", None, None),
                ("mediator", "中心调解员", "mediator", None, None),
                ("operator", "热线受理员", "intake_operator", None, None),
                ("wangge_haizhou", "海州区网格员", "grid_worker", "210902", None),
                ("jiedai", "市中心接待员", "reception", None, None),
                ("leader", "市领导", "leader", None, None),
                ("designer", "流程设计员", "process_designer", None, None)]
    accounts += [(f"fenbo_{login}", f"{DISTRICTS[code]}分拨员", "dispatcher", code, None)
                 for code, login in _DISTRICT_LOGINS.items()]
    accounts += [(f"bm_{code}", f"{name}办理人", "handler", None, code) for code, name in DEPARTMENTS.items()]
    return accounts


def save_staff(service, username, display_name, role, district, department, password) -> None:
    """Create or update one staff account in ``service``'s database."""
    with service.uow() as uow:
        row = uow.session.scalars(select(StaffUser).where(StaffUser.username == username)).first()
        if row is None:
            row = StaffUser(username=username)
            uow.add(row)
        row.display_name, row.role, row.district, row.department = display_name, role, district, department
        row.password_hash, row.active = hash_password(password), True
        uow.commit()


def load_demo_accounts(service, password: str = DEMO_PASSWORD) -> int:
    """Create the demo accounts that are missing; returns how many were created."""
    if service.settings.production:
        raise PermissionError("生产环境不加载演示账号 (demo accounts are refused in production)")
    created = 0
    hashed = hash_password(password)
    with service.uow() as uow:
        existing = set(uow.session.scalars(select(StaffUser.username)))
        for username, display, role, district, department in demo_accounts():
            if username not in existing:
                uow.add(StaffUser(username=username, display_name=display, password_hash=hashed,
                                  role=role, district=district, department=department, active=True))
                created += 1
        uow.commit()
    return created
