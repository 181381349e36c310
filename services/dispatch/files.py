"""Files on a case (docs/uploads.md): the citizen's photos, which arrive as references with
intake.case_submitted, and the attachments a department adds to a handling note or its reply.

Both are rows of ``case_files`` pointing into the shared blob store. A blob is served by
dispatch only through such a row of the case, to someone who may read the case
(``cases.may_read``): the key alone opens nothing.
"""
from __future__ import annotations

from sqlalchemy import select

from services.common.models import TimelineEntry
from services.common.reference import DEPARTMENTS
from services.common.service import Listeners

from .models import CaseFile

listeners = Listeners()
PHOTO, ATTACHMENT = "photo", "attachment"
REF_FIELDS = ("sha256", "content_type", "size", "filename", "thumbnail_sha256")


@listeners.on("intake.case_submitted")
def record_photos(service, uow, envelope):
    """The citizen's photos become files of the case, in the transaction that registers it
    (a redelivered message is skipped by the inbox before this runs)."""
    for ref in envelope["body"].get("photos", []):
        uow.add(CaseFile(case_no=envelope["case_no"], kind=PHOTO, department="", uploaded_by="",
                         created_at=service.clock.now(), **{k: ref.get(k) for k in REF_FIELDS}))


def uploader(user) -> str:
    """How an uploader is shown: 张三·市住建局."""
    department = DEPARTMENTS.get(getattr(user, "department", None) or "")
    return user.display_name + (f"·{department}" if department else "")


def attach(service, uow, user, case_no, refs, entry: TimelineEntry) -> list[CaseFile]:
    """Hang stored attachments (references from ``uploads.store_uploads``) on a timeline
    entry of the case; the caller commits them with the act."""
    uow.session.flush()  # the entry's id
    rows = [CaseFile(case_no=case_no, kind=ATTACHMENT, timeline_id=entry.id, department=user.department or "",
                     uploaded_by=uploader(user), created_at=service.clock.now(),
                     **{k: ref.get(k) for k in REF_FIELDS}) for ref in refs]
    for row in rows:
        uow.add(row)
    return rows


def for_case(service, case_no) -> list[CaseFile]:
    with service.uow() as uow:
        return uow.session.scalars(select(CaseFile).where(CaseFile.case_no == case_no)
                                   .order_by(CaseFile.created_at, CaseFile.id)).all()


def find(service, case_no, sha256) -> CaseFile | None:
    """The case's file with this content, or None (the same key on another case opens nothing)."""
    with service.uow() as uow:
        return uow.session.scalars(select(CaseFile).where(
            CaseFile.case_no == case_no, CaseFile.sha256 == sha256)).first()
