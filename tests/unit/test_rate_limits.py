"""Rate limits on public endpoints (services/common/web/ratelimit.py, docs/security.md):
low limits here, so each test reaches them; the storage on its own with a fake timer."""
import re

import pytest
from sqlalchemy import create_engine, func, select

from services.common.config import RateLimitSettings, from_env
from services.common.demo import load_demo_accounts
from services.common.ratelimits import RateLimitCounter, SqlStorage
from services.common.web.app import create_app
from services.intake.models import CitizenRequest
from tests.support.timers import FakeTimer

VALID = {"district": "海州区", "name": "张三", "phone": "13800001234", "description": "楼上漏水，天花板一直滴水"}
HIGH = "1000/hour"


def limits(**low):
    return RateLimitSettings(**{"submit_ip": HIGH, "submit_phone": HIGH, "lookup_ip": HIGH, "login_ip": HIGH, **low})


def cases(service):
    with service.uow() as uow:
        return uow.session.scalar(select(func.count()).select_from(CitizenRequest))


def form_token(html):
    return {name: re.search(rf'name="{name}" value="([^"]+)"', html).group(1)
            for name in ("csrf_token", "submission_token")}


# -- the storage -----------------------------------------------------------------------------

@pytest.fixture
def storage(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/limits.db")
    RateLimitCounter.__table__.create(engine)
    timer = FakeTimer()
    return SqlStorage(engine=engine, timer=timer), timer


def test_storage_counts_a_fixed_window_and_starts_again_after_it(storage):
    store, timer = storage
    assert [store.incr("k", 60) for _ in range(3)] == [1, 2, 3]
    assert store.get("k") == 3 and store.get("other") == 0
    assert store.get_expiry("k") == timer.now + 60
    timer.now += 59
    assert store.incr("k", 60) == 4
    timer.now += 1  # the window ended: counting starts again
    assert store.get("k") == 0
    assert store.incr("k", 60) == 1
    assert store.get_expiry("k") == timer.now + 60
    store.clear("k")
    assert store.get("k") == 0 and store.check()


def test_within_a_request_the_headers_read_what_the_hit_returned(storage):
    store, timer = storage
    store.remember_within_request()
    assert store.incr("k", 60) == 1
    with store.engine.connect() as conn:  # another process hits the same key meanwhile
        conn.execute(RateLimitCounter.__table__.update().values(count=5))
    assert (store.get("k"), store.get_expiry("k")) == (1, timer.now + 60)
    assert store.get("other") == 0  # a key not hit in this request is read from the table
    timer.now += 60
    assert store.get("k") == 0  # the remembered window ended
    store.forget()
    timer.now -= 60
    assert store.get("k") == 5  # outside a request: always the table


def test_a_bad_limit_setting_is_refused_at_start(build_service):
    service = build_service("intake", rate_limits=limits(submit_ip="thirty an hour"))
    with pytest.raises(RuntimeError, match="FZT_RATE_LIMIT_SUBMIT_IP"):
        create_app(service)
    env = from_env({"FZT_RATE_LIMIT_SUBMIT_PHONE": "5/hour", "FZT_RATE_LIMIT_ENABLED": "false"})
    assert env.rate_limits.submit_phone == "5/hour" and not env.rate_limits.enabled


# -- submissions -----------------------------------------------------------------------------

def test_form_refuses_the_phone_over_its_limit_keeps_what_was_typed_and_stores_nothing(build_service):
    intake = build_service("intake", rate_limits=limits(submit_phone="2/hour"))
    client = create_app(intake).test_client()
    for n in range(2):
        fields = form_token(client.get("/").get_data(as_text=True))
        # A submission that fails validation is not counted for the phone.
        assert client.post("/", data={**VALID, "district": "", **fields}).status_code == 400
        response = client.post("/", data={**VALID, "district": "210902", "description": f"第{n}次：楼上漏水", **fields})
        assert response.status_code == 302
    fields = form_token(client.get("/").get_data(as_text=True))
    response = client.post("/", data={**VALID, "district": "210902", "description": "第三次：邻居装修噪音太大", **fields})
    page = response.get_data(as_text=True)
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 3600
    assert "该联系电话近期提交的诉求较多" in page and "分钟后再试" in page
    assert "第三次：邻居装修噪音太大" in page and 'value="13800001234"' in page  # nothing typed is lost
    assert cases(intake) == 2
    # Another phone is still welcome.
    assert client.post("/", data={**VALID, "district": "210902", "phone": "13900001111", **fields}).status_code == 302


def test_api_and_open311_share_the_budget_of_one_address_and_answer_in_their_formats(build_service):
    intake = build_service("intake", rate_limits=limits(submit_ip="3/hour"))
    client = create_app(intake).test_client()
    for n in range(2):
        assert client.post("/api/v1/requests", json={**VALID, "phone": f"1380000{n:04d}"}).status_code == 201
    open311 = {"api_key": "fzt-open311-dev", "service_code": "housing", "attribute[district]": "210902",
               "name": "张三", "phone": "13700001234", "description": "路灯不亮，夜间出行不便", "address_string": "中华路"}
    assert client.post("/open311/v2/requests.json", data=open311).status_code == 200
    refused = client.post("/api/v1/requests", json={**VALID, "phone": "13600001234"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert refused.get_json()["error"] == "rate_limited" and "提交过于频繁" in refused.get_json()["message"]
    xml = client.post("/open311/v2/requests.xml", data=open311)
    assert xml.status_code == 429 and xml.headers["Content-Type"].startswith("text/xml")
    assert "<errors><error><code>429</code>" in xml.get_data(as_text=True)
    assert cases(intake) == 3
    # The count is in the service's database: another web process (another app) sees it.
    assert create_app(intake).test_client().post("/api/v1/requests", json=VALID).status_code == 429


def test_client_address_comes_from_trusted_proxies_only(build_service):
    behind_proxy = build_service("intake", rate_limits=limits(submit_ip="1/hour"), proxy_hops=1)
    client = create_app(behind_proxy).test_client()
    for address in ("10.1.1.1", "10.2.2.2"):
        response = client.post("/api/v1/requests", json=VALID, headers={"X-Forwarded-For": address})
        assert response.status_code == 201, address
    assert client.post("/api/v1/requests", json=VALID, headers={"X-Forwarded-For": "10.1.1.1"}).status_code == 429

    direct = build_service("intake", rate_limits=limits(submit_ip="1/hour"))
    client = create_app(direct).test_client()
    assert client.post("/api/v1/requests", json=VALID, headers={"X-Forwarded-For": "10.1.1.1"}).status_code == 201
    # Without FZT_PROXY_HOPS the header is the client's own claim: ignored.
    assert client.post("/api/v1/requests", json=VALID, headers={"X-Forwarded-For": "10.9.9.9"}).status_code == 429


# -- lookups and logins ----------------------------------------------------------------------

def test_tracking_lookups_are_limited_per_address(build_service):
    intake = build_service("intake", rate_limits=limits(lookup_ip="2/hour"))
    client = create_app(intake).test_client()
    assert client.get("/status").status_code == 200  # the empty form is not a lookup
    for _ in range(2):
        assert client.get("/api/v1/requests/210902-20261102-0001?tracking_code=ABCDEFGH").status_code == 404
    refused = client.get("/status?case_no=210902-20261102-0001&tracking_code=ABCDEFGH")
    assert refused.status_code == 429 and "查询过于频繁" in refused.get_data(as_text=True)
    assert client.get("/status").status_code == 200


@pytest.mark.parametrize("service_name", ["intake", "dispatch", "mediation", "supervision"])
def test_failed_logins_are_limited_per_address_across_usernames(build_service, service_name):
    service = build_service(service_name, rate_limits=limits(login_ip="2/hour"))
    load_demo_accounts(service)
    client = create_app(service).test_client()
    for username in ("admin", "someone", "fenbo_haizhou"):
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        response = client.post("/login", data={"username": username, "password": "wrong", "csrf_token": token})
    assert response.status_code == 429
    assert "登录失败次数过多" in response.get_data(as_text=True)
    assert response.headers["Retry-After"]


def test_limits_can_be_switched_off(build_service):
    intake = build_service("intake", rate_limits=RateLimitSettings(enabled=False, submit_ip="1/hour"))
    client = create_app(intake).test_client()
    assert [client.post("/api/v1/requests", json=VALID).status_code for _ in range(3)] == [201] * 3
