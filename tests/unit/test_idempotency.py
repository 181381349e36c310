"""Submitting at most once per key: Idempotency-Key on API v1 and Open311, the form's
one-time token (services/intake/idempotency.py). Concurrency on PostgreSQL:
tests/integration/test_idempotency_pg.py."""
import re

import pytest
from sqlalchemy import func, select

from services.common.config import RateLimitSettings
from services.common.models import OutboxMessage
from services.common.web.app import create_app
from services.intake.models import CitizenRequest

VALID = {"district": "海州区", "name": "张三", "phone": "13800001234", "description": "楼上漏水，天花板一直滴水"}
KEY = {"Idempotency-Key": "7f0c1f8e-5a7b-4c55-9a43-1d2f7e1c0b99"}
OPEN311 = {"api_key": "fzt-open311-dev", "service_code": "housing", "attribute[district]": "210902",
           "name": "张三", "phone": "13700001234", "description": "路灯不亮，夜间出行不便", "address_string": "中华路"}


@pytest.fixture
def intake(build_service):
    return build_service("intake")


@pytest.fixture
def client(intake):
    return create_app(intake).test_client()


def count(service, model=CitizenRequest):
    with service.uow() as uow:
        return uow.session.scalar(select(func.count()).select_from(model))


def test_api_retry_with_the_same_key_answers_the_first_case(client, intake):
    first = client.post("/api/v1/requests", json=VALID, headers=KEY)
    again = client.post("/api/v1/requests", json={**VALID, "description": " 楼上漏水，天花板一直滴水 "}, headers=KEY)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()  # same case_no and tracking code
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert count(intake) == 1 and count(intake, OutboxMessage) == 1
    other = client.post("/api/v1/requests", json=VALID, headers={"Idempotency-Key": "another-key"})
    assert other.status_code == 201 and other.get_json()["case_no"] != first.get_json()["case_no"]
    without = client.post("/api/v1/requests", json=VALID)
    assert without.status_code == 201 and count(intake) == 3


def test_api_same_key_with_other_content_is_refused(client, intake):
    client.post("/api/v1/requests", json=VALID, headers=KEY)
    response = client.post("/api/v1/requests", json={**VALID, "description": "另一件事：路灯坏了很久"}, headers=KEY)
    assert response.status_code == 422
    assert response.get_json()["error"] == "idempotency_key_reused"
    assert "Idempotency-Key" in response.get_json()["message"]
    assert count(intake) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "含中文", "has space"])
def test_api_refuses_a_malformed_key(client, intake, key):
    response = client.post("/api/v1/requests", json=VALID, headers={"Idempotency-Key": key})
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_idempotency_key"
    assert count(intake) == 0


def test_open311_retry_with_the_same_key_answers_the_first_request(client, intake):
    first = client.post("/open311/v2/requests.json", data=OPEN311, headers=KEY)
    again = client.post("/open311/v2/requests.json", data=OPEN311, headers=KEY)
    assert first.status_code == again.status_code == 200
    assert again.get_json() == first.get_json()
    changed = client.post("/open311/v2/requests.json", data={**OPEN311, "description": "井盖丢失，非常危险"}, headers=KEY)
    assert changed.status_code == 422 and changed.get_json()[0]["code"] == 422
    assert count(intake) == 1


def tokens(html):
    return {name: re.search(rf'name="{name}" value="([^"]+)"', html).group(1)
            for name in ("csrf_token", "submission_token")}


def test_form_double_submit_makes_one_case(client, intake):
    fields = tokens(client.get("/").get_data(as_text=True))
    form = {**VALID, "district": "210902", **fields}
    first, second = client.post("/", data=form), client.post("/", data=form)
    assert first.status_code == second.status_code == 302
    page = client.get("/submitted").get_data(as_text=True)
    [case_no] = re.findall(r"210902-\d{8}-\d{4}", page)[:1]
    assert count(intake) == 1 and case_no.endswith("-0001")
    # A new form gets a new token: a second request is a second case.
    fields = tokens(client.get("/").get_data(as_text=True))
    assert fields["submission_token"] != form["submission_token"]
    assert client.post("/", data={**VALID, "district": "210902", **fields}).status_code == 302
    assert count(intake) == 2


def test_form_resubmitted_with_other_content_asks_before_making_a_second_case(client, intake):
    fields = tokens(client.get("/").get_data(as_text=True))
    client.post("/", data={**VALID, "district": "210902", **fields})
    changed = {**VALID, "district": "210902", "description": "改了内容：楼道灯也不亮", **fields}
    response = client.post("/", data=changed)
    page = response.get_data(as_text=True)
    assert response.status_code == 409 and "这张表单已经提交过一次" in page
    assert "改了内容：楼道灯也不亮" in page  # what was typed is kept
    fresh = tokens(page)["submission_token"]
    assert fresh != fields["submission_token"] and count(intake) == 1
    assert client.post("/", data={**changed, "submission_token": fresh}).status_code == 302
    assert count(intake) == 2


def test_a_replay_does_not_count_against_the_phone_limit(build_service):
    intake = build_service("intake", rate_limits=RateLimitSettings(submit_ip="100/hour", submit_phone="1/hour"))
    client = create_app(intake).test_client()
    first = client.post("/api/v1/requests", json=VALID, headers=KEY)
    assert [client.post("/api/v1/requests", json=VALID, headers=KEY).status_code for _ in range(3)] == [201] * 3
    assert first.status_code == 201 and count(intake) == 1
    assert client.post("/api/v1/requests", json=VALID).status_code == 429  # a new one: over the limit
