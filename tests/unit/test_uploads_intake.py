"""The citizen's photos in intake (SQLite, memory bus): the form and the API, nothing stored
from a refused submission, the 413 for a body over the limit, the status page (docs/uploads.md)."""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from sqlalchemy import select

from services.common.blobs import store_for
from services.common.models import OutboxMessage
from services.common.web.app import create_app
from services.intake.models import CitizenRequest, RequestPhoto
from tests.support.db import blob_files, count
from tests.unit.test_uploads import exif_with_gps, image_bytes
from tests.support.http import csrf_token

CITIZEN = {"district": "海州区", "name": "张三", "phone": "13800001234", "description": "楼上漏水，天花板一直滴水"}
HTML = b"<!doctype html><script>alert(document.cookie)</script>"


def form_with_photos(page, *photos, **fields):
    values = {"csrf_token": csrf_token(page), "submission_token": re.search(
        r'name="submission_token" value="([^"]+)"', page).group(1), **CITIZEN, **fields}
    values["photos"] = [(io.BytesIO(data), name) for name, data in photos]
    return values


# -- the citizen --------------------------------------------------------------------------

@pytest.fixture
def intake(build_service):
    return build_service("intake")


@pytest.fixture
def citizen(intake):
    return create_app(intake).test_client()


def submitted_envelope(intake):
    with intake.uow() as uow:
        return uow.session.scalars(select(OutboxMessage).where(
            OutboxMessage.routing_key == "intake.case_submitted")).one().envelope


def test_the_form_takes_photos_and_they_travel_with_the_case(intake, citizen):
    page = citizen.get("/").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page
    assert re.search(r'<input id="photos" name="photos" type="file" accept="image/\*" multiple', page)
    response = citizen.post("/", data=form_with_photos(
        page, ("IMG_2041.JPG", image_bytes("JPEG", exif=exif_with_gps())), ("../../etc/passwd", image_bytes("PNG"))),
        content_type="multipart/form-data")
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    assert "已随诉求上传 2 张照片" in citizen.get("/submitted").get_data(as_text=True)
    with intake.uow() as uow:
        photos = uow.session.scalars(select(RequestPhoto).order_by(RequestPhoto.position)).all()
    assert [(p.filename, p.content_type) for p in photos] == [("IMG_2041.jpg", "image/jpeg"), ("passwd.png", "image/png")]
    store = store_for(intake.settings)
    assert not Image.open(store.path(photos[0].sha256)).getexif()  # GPS gone from what is stored
    body = submitted_envelope(intake)["body"]
    assert body["photos"] == [p.ref() for p in photos]


def test_one_bad_photo_refuses_the_submission_and_stores_nothing(intake, citizen):
    page = citizen.get("/").get_data(as_text=True)
    response = citizen.post("/", data=form_with_photos(page, ("ok.jpg", image_bytes()), ("cat.png", HTML)),
                            content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "“cat”不是可接受的照片格式（仅支持 JPEG、PNG、WebP）" in html
    assert 'value="楼上漏水，天花板一直滴水"' in html or "楼上漏水，天花板一直滴水</textarea>" in html  # typed text kept
    assert count(intake, CitizenRequest) == 0 and count(intake, OutboxMessage) == 0
    assert blob_files(intake) == []  # every file is checked before any is written


def test_a_form_error_elsewhere_asks_for_the_photos_again(citizen):
    page = citizen.get("/").get_data(as_text=True)
    response = citizen.post("/", data=form_with_photos(page, ("ok.jpg", image_bytes()), phone="123"),
                            content_type="multipart/form-data")
    assert response.status_code == 400
    assert "请重新选择照片" in response.get_data(as_text=True)


def test_too_many_photos(intake, citizen):
    page = citizen.get("/").get_data(as_text=True)
    response = citizen.post("/", data=form_with_photos(page, *[(f"{n}.jpg", image_bytes()) for n in range(5)]),
                            content_type="multipart/form-data")
    assert response.status_code == 400 and "最多上传 4 个照片" in response.get_data(as_text=True)
    assert count(intake, CitizenRequest) == 0


def test_api_takes_multipart_with_photos_and_json_without(intake, citizen):
    response = citizen.post("/api/v1/requests", data={**CITIZEN, "photos": [(io.BytesIO(image_bytes("WEBP")), "a.webp")]},
                            content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    assert citizen.post("/api/v1/requests", json=CITIZEN).status_code == 201
    assert count(intake, RequestPhoto) == 1
    bad = citizen.post("/api/v1/requests", data={**CITIZEN, "photos": [(io.BytesIO(HTML), "a.jpg")]},
                       content_type="multipart/form-data")
    assert bad.status_code == 400 and "不是可接受的照片格式" in bad.get_json()["fields"]["photos"][0]
    other = citizen.post("/api/v1/requests", data={**CITIZEN, "file": [(io.BytesIO(image_bytes()), "a.jpg")]},
                         content_type="multipart/form-data")
    assert other.status_code == 400 and other.get_json()["fields"] == {"file": ["不支持的字段"]}
    assert count(intake, CitizenRequest) == 2


def test_a_body_over_the_limit_is_413_in_chinese(build_service):
    small = build_service("intake", upload_photo_max_bytes=10_000, upload_max_photos=1,
                          upload_attachment_max_bytes=10_000, upload_max_attachments=1)
    client = create_app(small).test_client()
    huge = b"\xff\xd8\xff" + bytes(1_100_000)
    api = client.post("/api/v1/requests", data={**CITIZEN, "photos": [(io.BytesIO(huge), "big.jpg")]},
                      content_type="multipart/form-data")
    assert api.status_code == 413 and api.get_json()["error"] == "request_entity_too_large"
    assert "照片每张不超过" in api.get_json()["message"]
    page = client.get("/").get_data(as_text=True)
    form = client.post("/", data=form_with_photos(page, ("big.jpg", huge)), content_type="multipart/form-data")
    assert form.status_code == 413 and "上传的内容过大" in form.get_data(as_text=True)
    assert count(small, CitizenRequest) == 0


def test_photos_are_shown_only_to_the_browser_that_tracks_the_case(intake, citizen):
    created = citizen.post("/api/v1/requests", data={**CITIZEN, "photos": [(io.BytesIO(image_bytes()), "a.jpg")]},
                           content_type="multipart/form-data").get_json()
    with intake.uow() as uow:
        photo = uow.session.scalars(select(RequestPhoto)).one()
    url = f"/status/{created['case_no']}/photos/{photo.sha256}"
    assert citizen.get(url).status_code == 404  # no lookup in this browser yet
    stranger = create_app(intake).test_client()
    wrong = stranger.get(f"/status?case_no={created['case_no']}&tracking_code=AAAAAAAA")
    assert wrong.status_code == 404 and stranger.get(url).status_code == 404
    page = citizen.get(f"/status?case_no={created['case_no']}&tracking_code={created['tracking_code']}")
    html = page.get_data(as_text=True)
    assert "您上传的照片" in html and f"{url}?thumbnail=1" in html
    full = citizen.get(url)
    assert full.status_code == 200 and full.mimetype == "image/jpeg"
    assert full.headers["X-Content-Type-Options"] == "nosniff" and full.headers["Content-Security-Policy"] == "sandbox"
    assert full.headers["Cache-Control"] == "private, no-cache"
    thumb = citizen.get(url + "?thumbnail=1")
    assert thumb.status_code == 200 and thumb.get_data() != full.get_data()
    assert citizen.get(f"/status/{created['case_no']}/photos/{'0' * 64}").status_code == 404
    assert citizen.get(f"/status/{created['case_no']}/photos/..%2F..%2Fetc%2Fpasswd").status_code == 404
    # Public pages never show them.
    for public in ("/typical", "/notices", f"/open311/v2/requests/{created['case_no']}.json"):
        response = citizen.get(public)
        assert photo.sha256 not in response.get_data(as_text=True), public


