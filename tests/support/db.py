"""Reading a service's database in tests."""
from __future__ import annotations

from sqlalchemy import func, select


def count(service, model, *where) -> int:
    """Rows of ``model`` in ``service``'s database matching ``where``."""
    with service.uow() as uow:
        return uow.session.scalar(select(func.count()).select_from(model).where(*where))
