"""Requests per China day, district and channel (``request_counts``): what 受理量统计 reads.

``add_request`` is how a citizen request is stored, whatever the channel (``submit_request``
is its one caller): it adds the row and counts it with one atomic upsert in the same
transaction, so the count commits or rolls back with the request (a hotline order stored
twice, an idempotency twin: the loser's count goes with its rollback). The counts therefore
equal ``GROUP BY china day, district, channel`` over ``citizen_requests``, which stays true
because nothing deletes a request or changes its district, channel or created_at: retention
anonymises personal columns only, a merge sets status and merged_into.

On PostgreSQL the upsert locks its row until commit, and every submission of a district and
channel on one day updates the same row. That adds no waiting: the transaction already holds
the district's row of the day in ``case_sequences`` (``next_case_no``, taken first), so
submissions of one district and day are serialised before they reach this row.
Notes: docs/publicity.md.
"""
from __future__ import annotations

from datetime import date, datetime

from services.common.db import insert_for
from services.common.workdays import CHINA_TZ

from .models import CitizenRequest, RequestCount


def china_day(at: datetime) -> date:
    return at.astimezone(CHINA_TZ).date()


def add_request(uow, request: CitizenRequest) -> None:
    """Store ``request`` in ``uow`` and add it to its day's count (the caller commits)."""
    uow.add(request)
    table = RequestCount.__table__
    insert = insert_for(uow.session.get_bind().dialect.name)
    # On the connection: session.execute would flush the request now, one flush more than
    # it needs (it goes in with the instance at the step's flush).
    uow.session.connection().execute(
        insert(table).values(day=china_day(request.created_at), district=request.district,
                             channel=request.channel, n=1)
        .on_conflict_do_update(index_elements=list(table.primary_key.columns), set_={"n": table.c.n + 1}))
