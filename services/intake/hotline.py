"""The 12345 hotline gateway: work orders from the hotline's RabbitMQ exchange become intake
cases, and the cases' progress is reported back to the same exchange.

The contract with the hotline is docs/hotline-12345.md. In short:

* the hotline publishes orders to its topic exchange (``FZT_HOTLINE_EXCHANGE``, default
  ``hotline12345``) with routing key ``order.created``; we consume them from our own durable
  queue ``<prefix>.intake.hotline``;
* an order is stored with ``submit_request`` (channel ``hotline_12345``) *in the same
  transaction* as its ``hotline_orders`` row (order_id → case number) and its "accepted" status
  row, and acknowledged only after that commit. A redelivered order finds its row and is
  acknowledged without a second case;
* an order we can never take (undecodable, invalid, an order_id reused for other content) is
  published, with confirms, to ``<prefix>.intake.hotline.dead`` with the reason in the
  ``x-fzt-reason`` header, and then acknowledged;
* when storing fails (database down, …) the order is negatively acknowledged with requeue after
  a backoff; database connection errors are retried for as long as they last, any other error
  ``retries`` times, after which the order is dead-lettered with the error as reason;
* status reports (accepted / assigned / handled / rejected) are rows of
  ``hotline_status_outbox``, written by the transaction that caused them (the order's, or the
  intake listeners' in handlers.py); the gateway publishes them to the hotline exchange with
  routing key ``order.status`` and publisher confirms, then marks them sent (at least once;
  the AMQP ``message_id`` lets the hotline drop a repeat).

One thread, one pika ``BlockingConnection`` with two channels (consuming; publishing with
confirms); pika objects never cross threads. ``fzt hotline-gateway`` runs it until SIGTERM.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from sqlalchemy import select
from sqlalchemy.exc import (DBAPIError, DisconnectionError, IntegrityError, InterfaceError,
                            OperationalError)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.common.observability import case_context
from services.common.reference import CATEGORIES, district_code

from .models import HotlineOrder, HotlineStatus
from .requests import CHINA_OFFSET_HOURS, RequestSchema, submit_request

log = logging.getLogger(__name__)

CHANNEL = "hotline_12345"
ORDER_KEY = "order.created"
STATUS_KEY = "order.status"
STATUSES = ("accepted", "assigned", "handled", "rejected")
DEFAULT_EXCHANGE = "hotline12345"
CHINA = timezone(timedelta(hours=CHINA_OFFSET_HOURS))

# The order's shared fields and what RequestSchema calls them.
_SHARED_FIELDS = {"caller_name": "name", "caller_phone": "phone", "district": "district",
                  "content": "description", "category": "category", "address": "location"}
_ORDER_FIELD = {ours: theirs for theirs, ours in _SHARED_FIELDS.items()}
_CATEGORY_BY_NAME = {name: code for code, name in CATEGORIES.items()}


class HotlineError(Exception):
    """The gateway cannot run as configured (the message says why)."""


class InvalidOrder(ValueError):
    """An order that can never be stored: it goes to the dead-letter queue with this reason."""

    def __init__(self, reason: str, order_id: str | None = None):
        super().__init__(reason)
        self.order_id = order_id


# ---------------------------------------------------------------------------- orders


class OrderSchema(Schema):
    """The hotline-specific fields; the shared ones are checked by RequestSchema."""

    class Meta:
        unknown = EXCLUDE  # the hotline may add fields; we keep what we know

    order_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    received_at = fields.AwareDateTime(required=True)


@dataclass
class Order:
    order_id: str
    received_at: datetime
    request: dict  # RequestSchema-loaded, channel hotline_12345: what submit_request takes
    payload_hash: str


def parse_order(body: bytes) -> Order:
    """Decode and validate one work order; InvalidOrder (with every problem) if it is not one."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise InvalidOrder(f"cannot decode: the body is not UTF-8 JSON ({err})") from None
    if not isinstance(data, dict):
        raise InvalidOrder(f"invalid order: the body is a JSON {type(data).__name__}, not an object")
    errors, order = {}, {}
    try:
        order = OrderSchema().load(data)
    except ValidationError as err:
        errors.update(err.messages)
        order = err.valid_data or {}
    shared = {ours: data[theirs] for theirs, ours in _SHARED_FIELDS.items()
              if data.get(theirs) is not None}
    category = shared.get("category")
    if isinstance(category, str):
        # Our code or its Chinese name; the hotline's own categories are left to the dispatcher.
        category = category.strip()
        shared["category"] = category if category in CATEGORIES else _CATEGORY_BY_NAME.get(category, "")
    request = {}
    try:
        request = RequestSchema().load({**shared, "channel": CHANNEL})
    except ValidationError as err:
        errors.update({_ORDER_FIELD.get(k, k): v for k, v in err.messages.items()})
    order_id = order.get("order_id") or (data["order_id"] if isinstance(data.get("order_id"), str) else None)
    if errors:
        raise InvalidOrder(f"invalid order {order_id or '(no order_id)'}: {_describe(errors)}", order_id)
    request["district"] = district_code(request["district"])  # a name becomes its code
    received_at = order["received_at"]
    canonical = json.dumps({"order_id": order["order_id"],
                            "received_at": received_at.astimezone(timezone.utc).isoformat(),
                            **request}, sort_keys=True, ensure_ascii=False)
    return Order(order["order_id"], received_at, request,
                 hashlib.sha256(canonical.encode("utf-8")).hexdigest())


def _describe(errors: dict) -> str:
    def text(messages):
        if isinstance(messages, dict):
            return "; ".join(f"{k}: {text(v)}" for k, v in messages.items())
        if isinstance(messages, (list, tuple)):
            return " ".join(text(m) for m in messages)
        return str(messages)
    return "; ".join(f"{field}: {text(errors[field])}" for field in sorted(errors, key=str))


# ---------------------------------------------------------------------------- storing


def store_order(service, order: Order) -> tuple[str, str]:
    """Store the order as a case with its "accepted" status, once: ("stored" | "duplicate",
    case number). InvalidOrder if the order_id was already used for other content."""
    try:
        with service.uow() as uow:
            existing = uow.session.get(HotlineOrder, order.order_id)
            if existing is not None:
                return "duplicate", _same_order(existing, order)
            request = submit_request(service, order.request, uow)
            now = service.clock.now()
            uow.add(HotlineOrder(order_id=order.order_id, case_no=request.case_no,
                                 received_at=order.received_at, stored_at=now,
                                 payload_hash=order.payload_hash))
            uow.add(_status_row(order.order_id, request.case_no, "accepted", "已受理，等待分拨", now, now))
            uow.commit()
            return "stored", request.case_no
    except IntegrityError:
        # Another gateway stored the same order at the same moment (a redelivery after a
        # connection loss): our transaction rolled back, theirs holds the case.
        with service.uow() as uow:
            existing = uow.session.get(HotlineOrder, order.order_id)
            if existing is None:
                raise
            return "duplicate", _same_order(existing, order)


def _same_order(existing: HotlineOrder, order: Order) -> str:
    if existing.payload_hash != order.payload_hash:
        raise InvalidOrder(f"order_id {order.order_id} is already case {existing.case_no} with other "
                           "content; this order is not taken (send corrections under a new order_id)",
                           order.order_id)
    return existing.case_no


def _status_row(order_id, case_no, status, note, at, now) -> HotlineStatus:
    if status not in STATUSES:
        raise ValueError(f"unknown hotline status {status!r}")
    return HotlineStatus(message_id=str(uuid.uuid4()), order_id=order_id, case_no=case_no,
                         status=status, note=(note or "")[:2000], at=at, created_at=now)


def report_status(service, uow, request, status: str, note: str = "", at=None):
    """Queue a status report for the hotline in ``uow`` if ``request`` (a CitizenRequest)
    came from the hotline (the intake listeners call this); returns the row, or None for
    other cases, which cost no query."""
    if request.channel != CHANNEL:
        return None
    case_no = request.case_no
    order = uow.session.scalars(select(HotlineOrder).where(HotlineOrder.case_no == case_no)).first()
    if order is None:
        return None
    now = service.clock.now()
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            at = None
    row = _status_row(order.order_id, case_no, status, note, at or now, now)
    uow.add(row)
    return row


def status_body(row: HotlineStatus) -> dict:
    return {"order_id": row.order_id, "case_no": row.case_no, "status": row.status,
            "at": row.at.astimezone(CHINA).isoformat(timespec="seconds"), "note": row.note}


# ---------------------------------------------------------------------------- the gateway


def hotline_parameters(url: str):
    """pika parameters for the hotline's broker (amqp:// or amqps://, kombu-style URLs too)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("amqp", "amqps", "pyamqp", "pyamqps", "librabbitmq"):
        raise HotlineError(
            f"the hotline gateway needs the hotline's RabbitMQ: set FZT_HOTLINE_URL (or FZT_BROKER_URL) "
            f"to an amqp:// URL, not {url.split(';')[0]!r}")
    from services.common.bus.deadletters import pika_parameters
    return pika_parameters(url)


_TRANSIENT = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)


def _transient(err: Exception) -> bool:
    """A database that is down or unreachable: retried for as long as it lasts."""
    return isinstance(err, _TRANSIENT) or (isinstance(err, DBAPIError) and err.connection_invalidated)


class HotlineGateway:
    def __init__(self, service, url: str | None = None, exchange: str | None = None,
                 prefix: str | None = None, prefetch: int = 10, relay_interval: float = 0.5,
                 retry_delay: float = 1.0, max_retry_delay: float = 30.0, retries: int = 5,
                 batch_size: int = 100):
        settings = service.settings
        self.service = service
        self.url = url or settings.hotline_url or settings.broker_url
        self.exchange = exchange or settings.hotline_exchange or DEFAULT_EXCHANGE
        prefix = prefix or settings.bus_prefix
        self.queue = f"{prefix}.intake.hotline"
        self.dead_queue = f"{self.queue}.dead"
        self.parameters = hotline_parameters(self.url)
        self.prefetch = prefetch
        self.relay_interval = relay_interval
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.retries = retries
        self.batch_size = batch_size
        self.stopping = threading.Event()
        self.ready = threading.Event()  # set while consuming
        self._thread: threading.Thread | None = None
        self._failures = 0  # consecutive failed attempts to store (the backoff)
        self._attempts: dict[str, int] = {}  # body digest → failed attempts (non-transient errors)
        self._relay_at = 0.0
        self._consumed = False

    # -- running

    def start(self) -> "HotlineGateway":
        self._thread = threading.Thread(target=self.run, daemon=True, name="intake-hotline-gateway")
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the order in hand, give prefetched ones back to the queue, disconnect."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("hotline gateway still running after %.0f s", timeout)

    def run(self) -> None:
        """Consume and relay until ``stop``; reconnects after a lost connection."""
        import pika.exceptions

        if logging.getLogger("pika").level == logging.NOTSET:
            logging.getLogger("pika").setLevel(logging.WARNING)  # a line per channel otherwise
        delay = self.retry_delay
        while not self.stopping.is_set():
            self._consumed = False
            try:
                self._connected()
            except (pika.exceptions.AMQPError, OSError) as err:
                log.warning("hotline gateway: broker connection lost or refused (%r); "
                            "reconnecting in %.1f s", err, delay)
            except Exception:
                log.exception("hotline gateway crashed; restarting in %.1f s", delay)
            if self._consumed:  # it worked for a while: start the backoff afresh
                delay = self.retry_delay
            if not self.stopping.is_set():
                self.stopping.wait(delay)
                delay = min(delay * 2, self.max_retry_delay)

    def declare(self, channel) -> None:
        """The hotline's exchange (idempotent; it must be a durable topic exchange) and our
        durable queue bound to ``order.created``, with its dead-letter queue."""
        channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        channel.queue_declare(self.dead_queue, durable=True)
        channel.queue_declare(self.queue, durable=True)
        channel.queue_bind(self.queue, self.exchange, routing_key=ORDER_KEY)

    def _connected(self) -> None:
        import pika

        connection = pika.BlockingConnection(self.parameters)
        try:
            consuming, publishing = connection.channel(), connection.channel()
            publishing.confirm_delivery()
            self.declare(consuming)
            consuming.basic_qos(prefetch_count=self.prefetch)
            self.ready.set()
            self._consumed = True
            log.info("hotline gateway consuming %s (exchange %s on %s:%s)", self.queue, self.exchange,
                     self.parameters.host, self.parameters.port)
            for method, properties, body in consuming.consume(self.queue,
                                                              inactivity_timeout=self.relay_interval):
                if method is not None:
                    self._on_order(connection, consuming, publishing, method, properties, body)
                if self.stopping.is_set():
                    break
                if time.monotonic() >= self._relay_at:
                    self._relay(publishing)
            if consuming.is_open:
                consuming.cancel()  # prefetched, unacknowledged orders go back to the queue
        finally:
            self.ready.clear()
            if connection.is_open:
                try:
                    connection.close()
                except Exception:  # closing a broken connection; the broker requeues anyway
                    pass

    # -- orders

    def _on_order(self, connection, consuming, publishing, method, properties, body) -> None:
        digest = hashlib.sha256(body).hexdigest()
        try:
            order = parse_order(body)
            outcome, case_no = store_order(self.service, order)
        except InvalidOrder as err:
            self._refuse(connection, consuming, publishing, method, properties, body, str(err), err.order_id)
            return
        except Exception as err:
            self._failures += 1
            # A database outage is waited out, however long; other errors count.
            attempts = 0 if _transient(err) else self._attempts.get(digest, 0) + 1
            if attempts:
                self._attempts[digest] = attempts
            if attempts and attempts >= self.retries:
                self._attempts.pop(digest, None)
                log.error("hotline order failed %d times, dead-lettering it: %r", attempts, err)
                self._refuse(connection, consuming, publishing, method, properties, body,
                             f"storing failed {attempts} times: {type(err).__name__}: {err}", None)
                return
            delay = min(self.retry_delay * 2 ** (self._failures - 1), self.max_retry_delay)
            log.warning("hotline order not stored (%s: %s); back to the queue in %.1f s",
                        type(err).__name__, err, delay)
            self._sleep(connection, delay)
            consuming.basic_nack(method.delivery_tag, requeue=True)
            return
        self._failures = 0
        self._attempts.pop(digest, None)
        if len(self._attempts) > 10_000:  # orders that failed once and never came back
            self._attempts.clear()
        self._ack(consuming, method.delivery_tag)
        with case_context(case_no, self.service.name):
            log.info("hotline order %s %s as case %s", order.order_id,
                     "stored" if outcome == "stored" else "was already stored", case_no)
        if outcome == "stored":
            self._relay_at = 0.0  # report "accepted" right away

    def _ack(self, channel, delivery_tag) -> None:
        channel.basic_ack(delivery_tag)

    def _refuse(self, connection, consuming, publishing, method, properties, body, reason, order_id):
        """Dead-letter (confirmed) then acknowledge; if even that fails, requeue after a pause."""
        import pika
        import pika.exceptions

        log.error("hotline order refused: %s", reason)
        headers = dict(properties.headers or {})
        headers.update({"x-fzt-reason": reason[:1000], "x-fzt-service": "intake.hotline",
                        "x-fzt-routing-key": method.routing_key, "x-fzt-exchange": method.exchange})
        if order_id:
            headers["x-fzt-order-id"] = order_id
        try:
            publishing.basic_publish(
                "", self.dead_queue, body, mandatory=True,
                properties=pika.BasicProperties(
                    content_type=properties.content_type or "application/octet-stream",
                    content_encoding=properties.content_encoding, headers=headers, delivery_mode=2,
                    message_id=properties.message_id, timestamp=int(time.time())))
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as err:
            log.error("cannot dead-letter to %s (%r); the order goes back to the queue", self.dead_queue, err)
            self._sleep(connection, self.max_retry_delay)
            consuming.basic_nack(method.delivery_tag, requeue=True)
            return
        self._ack(consuming, method.delivery_tag)

    def _sleep(self, connection, seconds: float) -> None:
        """Wait, keeping the connection serviced (heartbeats); cut short by ``stop``."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            connection.sleep(min(left, 0.2))

    # -- status reports

    def _relay(self, publishing) -> None:
        import pika.exceptions

        try:
            sent = self.relay_once(publishing)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as err:
            log.warning("hotline status not accepted by the broker (%s: is a queue bound to %s on %s?); "
                        "retrying in %.0f s", type(err).__name__, STATUS_KEY, self.exchange,
                        self.max_retry_delay)
            self._relay_at = time.monotonic() + self.max_retry_delay
            return
        except (pika.exceptions.AMQPError, OSError):
            raise  # the connection is gone: reconnect
        except Exception as err:  # the database: try again later, keep taking orders
            log.warning("hotline status relay failed (%s: %s)", type(err).__name__, err)
            self._relay_at = time.monotonic() + min(5.0, self.max_retry_delay)
            return
        self._relay_at = 0.0 if sent == self.batch_size else time.monotonic() + self.relay_interval

    def relay_once(self, publishing) -> int:
        """Publish one batch of unsent status rows with confirms; mark each sent. Returns how
        many were sent. A failed publish leaves that row (and the rest) for the next round."""
        import pika

        with self.service.uow() as uow:
            rows = uow.session.scalars(
                select(HotlineStatus).where(HotlineStatus.sent_at.is_(None))
                .order_by(HotlineStatus.id).limit(self.batch_size)
                .with_for_update(skip_locked=True)).all()
            sent = 0
            try:
                for row in rows:
                    publishing.basic_publish(
                        self.exchange, STATUS_KEY,
                        json.dumps(status_body(row), ensure_ascii=False).encode("utf-8"),
                        mandatory=True,
                        properties=pika.BasicProperties(
                            content_type="application/json", content_encoding="utf-8",
                            delivery_mode=2, message_id=row.message_id, type=STATUS_KEY,
                            app_id="fzt-intake", timestamp=int(time.time())))
                    row.sent_at = self.service.clock.now()
                    sent += 1
            finally:
                if sent:
                    uow.commit()  # what was confirmed is marked, even if a later row failed
            return sent
