"""A citizen's photo from intake's form to the dispatcher's case page, over the real
RabbitMQ and PostgreSQL: only the reference travels on the bus, the bytes stay in the shared
blob store, and dispatch serves them under its own case scope (docs/uploads.md)."""
import io

from PIL import Image
from sqlalchemy import select

from services.common.demo import DEMO_PASSWORD, load_demo_accounts
from services.common.models import WorkItem
from services.common.web.app import create_app
from services.common.worker import Worker
from services.dispatch.models import CaseFile
from tests.support.http import csrf_token, wait_for

CITIZEN = {"district": "210902", "name": "张三", "phone": "13800001234", "description": "小区路灯坏了一个月"}


def photo_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (41.0, 59.0, 30.0), 3: "E", 4: (121.0, 39.0, 10.0)}
    out = io.BytesIO()
    Image.new("RGB", (640, 480), "orange").save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def test_a_photo_travels_from_the_citizen_to_the_case_page(pg_service):
    intake, dispatch = pg_service("intake"), pg_service("dispatch")
    assert intake.settings.blob_root == dispatch.settings.blob_root  # one shared store
    load_demo_accounts(dispatch)
    workers = [Worker(intake).start(), Worker(dispatch).start()]
    try:
        citizen = create_app(intake).test_client()
        created = citizen.post("/api/v1/requests", data={**CITIZEN, "photos": [(io.BytesIO(photo_with_gps()), "路灯.jpg")]},
                               content_type="multipart/form-data")
        assert created.status_code == 201, created.get_json()
        case_no = created.get_json()["case_no"]
        wait_for(lambda: _files(dispatch, case_no), what="the photo on the dispatch case")
        wait_for(lambda: _queued(dispatch, case_no), what="the case in the queue")
    finally:
        for worker in workers:
            worker.stop()
    (row,) = _files(dispatch, case_no)
    assert (row.kind, row.filename, row.content_type) == ("photo", "路灯.jpg", "image/jpeg")

    staff = create_app(dispatch).test_client()
    login = staff.get("/login").get_data(as_text=True)
    staff.post("/login", data={"username": "fenbo_haizhou", "password": DEMO_PASSWORD, "csrf_token": csrf_token(login)})
    page = staff.get(f"/cases/{case_no}").get_data(as_text=True)
    url = f"/cases/{case_no}/files/{row.sha256}"
    assert "现场照片" in page and f"{url}?thumbnail=1" in page
    served = staff.get(url)
    assert served.status_code == 200 and served.mimetype == "image/jpeg"
    assert not Image.open(io.BytesIO(served.get_data())).getexif()  # no GPS reached the staff either
    assert staff.get(url + "?thumbnail=1").status_code == 200

    other = create_app(dispatch).test_client()
    login = other.get("/login").get_data(as_text=True)
    other.post("/login", data={"username": "fenbo_xihe", "password": DEMO_PASSWORD, "csrf_token": csrf_token(login)})
    assert other.get(url).status_code == 403  # another district's dispatcher


def _files(dispatch, case_no):
    with dispatch.uow() as uow:
        return uow.session.scalars(select(CaseFile).where(CaseFile.case_no == case_no)).all()


def _queued(dispatch, case_no):
    with dispatch.uow() as uow:
        return uow.session.scalars(select(WorkItem).where(WorkItem.case_no == case_no,
                                                          WorkItem.task_name == "assign")).first()
