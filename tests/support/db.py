"""Reading what a service stored, in tests: database rows and upload files."""
from __future__ import annotations

from sqlalchemy import func, select

from services.common.blobs import store_for


def count(service, model, *where) -> int:
    """Rows of ``model`` in ``service``'s database matching ``where``."""
    with service.uow() as uow:
        return uow.session.scalar(select(func.count()).select_from(model).where(*where))


def blob_files(service) -> list[str]:
    """Names of the files in ``service``'s upload store (blobs.py)."""
    root = store_for(service.settings).root
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []
