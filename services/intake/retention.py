"""What intake keeps about a citizen, for retention (services/common/retention.py, docs/privacy.md).

A request is archived when it is closed, rejected, merged into another case, or handled and
intake's process has ended (the common rule also wants every instance ended and no activity
for FZT_RETENTION_DAYS). Anonymised: the requester's name, phone, e-mail and address;
personal numbers in the description, the rating comments (回访), the notifications sent to
the citizen (recipient too) and the 12345 status notes; the references to the citizen's
photos (the blobs stay in the shared store until a store-wide clean-up); the Open311 point is
coarsened to 0.01° (about 1 km: maps by area still work) and its media link dropped. Kept: district,
category, channel, status, dates, tracking code — the statistics and the status page.
"""
from __future__ import annotations

from sqlalchemy import delete, select

from services.common.retention import DROP, PERSONAL, TEXT, anonymise_rows

from .models import CitizenRequest, HotlineStatus, Notification, RequestPhoto, SatisfactionRating

ARCHIVED_STATUSES = ("closed", "handled", "rejected", "merged")
REQUEST_COLUMNS = {"name": PERSONAL, "phone": PERSONAL, "location": PERSONAL, "email": PERSONAL,
                   "description": TEXT, "media_url": DROP}
# Other rows of the request (its own case number), and how their columns are anonymised.
RELATED = ((SatisfactionRating, {"comment": TEXT}),
           (Notification, {"recipient": PERSONAL, "subject": TEXT, "body": TEXT, "last_error": TEXT}),
           (HotlineStatus, {"note": TEXT}))
COORDINATE_DECIMALS = 2


class IntakePersonalData:
    def archived(self, session, case_no) -> bool:
        request = session.get(CitizenRequest, case_no)
        return request is None or request.status in ARCHIVED_STATUSES

    def contact(self, session, case_no):
        request = session.get(CitizenRequest, case_no)
        return (request.name, request.phone) if request else (None, None)

    def anonymise(self, session, case_no, scrub) -> list[str]:
        records = []
        request = session.get(CitizenRequest, case_no)
        if request is not None:
            changed = anonymise_rows([request], REQUEST_COLUMNS, scrub)
            for column in ("latitude", "longitude"):
                value = getattr(request, column)
                if value is not None and round(value, COORDINATE_DECIMALS) != value:
                    setattr(request, column, round(value, COORDINATE_DECIMALS))
                    scrub.changed.add("coordinates")
                    changed = True
            if changed:
                records.append("citizen_requests")
        if session.execute(delete(RequestPhoto).where(RequestPhoto.case_no == case_no)).rowcount:
            scrub.changed.add("photos")
            records.append("request_photos")
        for model, columns in RELATED:
            rows = session.scalars(select(model).where(model.case_no == case_no)).all()
            if anonymise_rows(rows, columns, scrub):
                records.append(model.__tablename__)
        return records
