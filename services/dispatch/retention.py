"""What dispatch keeps about a citizen beyond the workflow, for retention
(services/common/retention.py, docs/privacy.md): the references to the citizen's photos are
removed (no page can show them any more), attachment names are masked. The departments'
attachments themselves stay: they are the record of the work done. Blobs stay in the shared
store until a store-wide clean-up removes unreferenced ones (docs/privacy.md, "Not covered").
"""
from __future__ import annotations

from sqlalchemy import delete, select

from services.common.retention import TEXT, anonymise_rows

from .models import CaseFile


class DispatchPersonalData:
    def archived(self, session, case_no) -> bool:
        return True  # every dispatch instance of the case has ended: the common rule decides

    def contact(self, session, case_no):
        return None, None  # from the case data (services/common/retention.py, contact_in)

    def anonymise(self, session, case_no, scrub) -> list[str]:
        records = []
        photos = session.execute(delete(CaseFile).where(CaseFile.case_no == case_no, CaseFile.kind == "photo"))
        if photos.rowcount:
            scrub.changed.add("photos")
            records.append("case_files")
        attachments = session.scalars(select(CaseFile).where(CaseFile.case_no == case_no)).all()
        if anonymise_rows(attachments, {"filename": TEXT}, scrub):
            records.append("case_files")
        return records
