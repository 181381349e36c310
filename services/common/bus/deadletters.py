"""Operator tools for dead letters: list, show, replay (as is or fixed) and discard.

A service's dead-letter queue ``<prefix>.<service>.dead`` holds what its consumer refused
(``x-fzt-reason``) or what RabbitMQ took away after the delivery limit (``x-death``). The
unrouted queue ``<prefix>.unrouted`` holds events no service queue was bound for. Both are
classic queues, read here with pika and nothing else (no management plugin needed).

Reading without losing anything: every operation opens one channel, takes the ready
messages with ``basic.get`` *without acknowledging them* and holds them all until it is done.
Nothing is requeued half-way, so no message is read twice or skipped, and closing the channel
puts every held message back at its original position in the queue (classic queues requeue in
order). Only a message that was replayed (after the broker confirmed the republish) or
discarded (after the audit line is on disk) is acknowledged, i.e. removed. While an operation
runs, the messages it holds are invisible to a second operator; they return when it ends, also
when it crashes or the connection drops.

Message ids: the envelope's ``id`` when the body is an envelope, else the AMQP ``message_id``
property, else ``sha256:<first 16 hex of the body's digest>`` (undecodable bodies); the last
one is stable, so a poison message keeps its id when it is dead-lettered again after a replay.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import click

from ..config import SERVICES, from_env
from .messages import InvalidMessage, parse_envelope

UNROUTED = "unrouted"
AUDIT_FILE = "dead-letters-discarded.jsonl"
PREVIEW_CHARS = 80

# Headers describing a past dead-lettering; dropped when a message is replayed (the consumer
# or the broker writes fresh ones if it fails again).
_DEATH_HEADERS = ("x-death", "x-first-death-reason", "x-first-death-queue", "x-first-death-exchange",
                  "x-last-death-reason", "x-last-death-queue", "x-last-death-exchange",
                  "x-fzt-reason", "x-fzt-service", "x-fzt-routing-key", "x-delivery-count")


class DeadLetterError(Exception):
    """An operation refused or impossible; the message says why (shown to the operator)."""


@dataclass
class DeadLetter:
    index: int                    # 1-based position in the queue at the time of reading
    message_id: str
    type: str                     # envelope type, "" when the body is not an envelope
    case_no: str
    reason: str
    routing_key: str              # the original routing key (what replay publishes with)
    first_seen: datetime | None   # when it was first dead-lettered, if the broker recorded it
    body: bytes
    headers: dict = field(default_factory=dict)
    content_type: str | None = None
    content_encoding: str | None = None
    amqp_message_id: str | None = None
    timestamp: int | None = None
    envelope: dict | None = None  # the decoded JSON body when it is a JSON object
    replays: int = 0              # how often an operator replayed it already

    @property
    def body_text(self) -> str | None:
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            return None

    @property
    def preview(self) -> str:
        text = self.body_text
        if text is None:
            text = "<binary> " + self.body[:PREVIEW_CHARS // 3].hex()
        text = " ".join(text.split())
        return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 1] + "…"

    def as_dict(self) -> dict:
        """JSON-safe description (for ``show`` and the audit file)."""
        text = self.body_text
        return {
            "message_id": self.message_id, "type": self.type, "case_no": self.case_no,
            "reason": self.reason, "routing_key": self.routing_key,
            "first_seen": self.first_seen.isoformat() if self.first_seen else None,
            "replays": self.replays, "content_type": self.content_type,
            "content_encoding": self.content_encoding,
            "headers": _json_safe(self.headers),
            "body": text if text is not None else base64.b64encode(self.body).decode("ascii"),
            "body_encoding": "utf-8" if text is not None else "base64",
        }


@dataclass
class Listing:
    queue: str
    total: int                 # ready messages in the queue when reading started
    letters: list[DeadLetter]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.letters)


@dataclass
class Replayed:
    message_id: str
    routing_key: str
    fixed: bool
    warning: str = ""


# ---------------------------------------------------------------------------- connection


def pika_parameters(broker_url: str):
    """pika connection parameters for a kombu-style AMQP URL; refuses other transports."""
    import pika

    url = broker_url.split(";")[0].strip()
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme.startswith("memory"):
        raise DeadLetterError(
            "dead letters need a real RabbitMQ broker: FZT_BROKER_URL is the in-memory bus "
            f"({url}), whose dead letters live only inside the running process. Set FZT_BROKER_URL "
            "to the amqp:// URL the workers use.")
    schemes = {"amqp": "amqp", "pyamqp": "amqp", "librabbitmq": "amqp", "amqps": "amqps",
               "pyamqps": "amqps"}
    if scheme not in schemes:
        raise DeadLetterError(f"dead letters need a RabbitMQ (amqp://) broker, not {scheme or url!r}")
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or (5671 if schemes[scheme] == "amqps" else 5672)
    user = unquote(parts.username) if parts.username else "guest"
    password = unquote(parts.password) if parts.password else "guest"
    # kombu: "/" or "" is the default vhost "/", "//" is "/" too, "/fzt" is "fzt".
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) or "/"
    query = f"?{parts.query}" if parts.query else ""
    return pika.URLParameters(
        f"{schemes[scheme]}://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/"
        f"{quote(vhost, safe='')}{query}")


# ---------------------------------------------------------------------------- the tool


class DeadLetters:
    """One service's dead-letter queue (or, with service "unrouted", the unrouted queue)."""

    def __init__(self, broker_url: str, prefix: str, service: str, var_dir: Path | str | None = None,
                 clock=None):
        self.parameters = pika_parameters(broker_url)
        self.prefix = prefix
        self.service = service
        self.var_dir = Path(var_dir) if var_dir is not None else None
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.queue = f"{prefix}.{UNROUTED}" if service == UNROUTED else f"{prefix}.{service}.dead"
        self.events_exchange = f"{prefix}.events"

    @classmethod
    def from_settings(cls, service: str, settings=None) -> "DeadLetters":
        if settings is None:
            settings = from_env()
        return cls(settings.broker_url, settings.bus_prefix, service, settings.var_dir)

    @property
    def audit_path(self) -> Path:
        if self.var_dir is None:
            raise DeadLetterError("no FZT_VAR_DIR for the audit file of discarded messages")
        return self.var_dir / AUDIT_FILE

    # -- reading

    def list(self, limit: int | None = 50) -> Listing:
        """The first ``limit`` messages (all with None), in queue order, none removed."""
        with self._hold(limit) as (_channel, held, total):
            return Listing(self.queue, max(total, len(held)), [letter for _tag, letter in held])

    def show(self, message_id: str) -> list[DeadLetter]:
        """Every message with this id (or unique id prefix); usually exactly one."""
        with self._hold() as (_channel, held, _total):
            return [letter for _tag, letter in self._select(held, message_id)]

    # -- acting

    def replay(self, message_id: str | None = None, all: bool = False,
               fixed_body=None) -> list[Replayed]:
        """Republish to the events exchange with the original routing key, then remove.

        ``fixed_body`` (a dict, or JSON text/bytes) replaces the body of the one selected
        message; it must be a valid envelope, else nothing is sent. Each message is removed
        from the dead-letter queue only after the broker confirmed its republish.
        """
        if all == (message_id is not None):
            raise DeadLetterError("give either a message id or all=True")
        if fixed_body is not None and all:
            raise DeadLetterError("a fixed body replaces one message; give its id, not --all")
        fixed = self._validate_fix(fixed_body) if fixed_body is not None else None
        done: list[Replayed] = []
        with self._hold() as (channel, held, _total):
            chosen = held if all else self._select(held, message_id)
            if fixed is not None and len(chosen) > 1:
                raise DeadLetterError(
                    f"{len(chosen)} messages have id {message_id}; a fixed body replaces exactly one "
                    "(discard the duplicates first)")
            channel.confirm_delivery()
            for tag, letter in chosen:
                try:
                    done.append(self._republish(channel, letter, fixed))
                except DeadLetterError as err:
                    if done:
                        raise DeadLetterError(f"{err} ({len(done)} message(s) replayed before "
                                              "this one; the rest stay in the queue)") from None
                    raise
                channel.basic_ack(tag)
        return done

    def discard(self, message_id: str, note: str) -> list[DeadLetter]:
        """Remove the message(s) with this id, after writing each to the audit file."""
        if not note or not note.strip():
            raise DeadLetterError("a note is required: say why the message is discarded")
        with self._hold() as (channel, held, _total):
            chosen = self._select(held, message_id)
            self._audit([letter for _tag, letter in chosen], note.strip())
            for tag, _letter in chosen:
                channel.basic_ack(tag)
        return [letter for _tag, letter in chosen]

    # -- internals

    @contextmanager
    def _hold(self, limit: int | None = None):
        """Yield (channel, [(delivery tag, DeadLetter)], ready count) with the messages held
        unacknowledged on the channel; closing it requeues whatever was not acked, in order."""
        import pika
        from pika.exceptions import AMQPConnectionError, AMQPError, ChannelClosedByBroker

        try:
            connection = pika.BlockingConnection(self.parameters)
        except AMQPConnectionError as err:
            raise DeadLetterError(f"cannot connect to the broker {self.parameters.host}:"
                                  f"{self.parameters.port}: {err!r}") from None
        try:
            channel = connection.channel()
            try:
                total = channel.queue_declare(self.queue, passive=True).method.message_count
            except ChannelClosedByBroker as err:
                if err.reply_code == 404:
                    raise DeadLetterError(
                        f"queue {self.queue} does not exist: check FZT_BUS_PREFIX, or the "
                        f"{self.service} worker has never run") from None
                raise
            held = []
            while limit is None or len(held) < limit:
                method, properties, body = channel.basic_get(self.queue, auto_ack=False)
                if method is None:
                    break
                held.append((method.delivery_tag,
                             self._letter(len(held) + 1, method, properties, body)))
            try:
                yield channel, held, total
            finally:
                if channel.is_open:
                    channel.close()  # everything not acked goes back, in its original place
        except ChannelClosedByBroker as err:
            raise DeadLetterError(f"the broker refused: {err.reply_code} {err.reply_text}; "
                                  "messages not yet replayed or discarded stay in the queue") from None
        except AMQPError as err:
            raise DeadLetterError(f"broker connection failed: {err!r}; messages not yet replayed "
                                  "or discarded stay in the queue") from None
        finally:
            if connection.is_open:
                connection.close()

    def _letter(self, index, method, properties, body: bytes) -> DeadLetter:
        headers = dict(properties.headers or {})
        envelope = _json_object(body)
        deaths = [d for d in (headers.get("x-death") or []) if isinstance(d, dict)]
        env_id = envelope.get("id") if envelope else None
        amqp_id = _text(properties.message_id) if properties.message_id else None
        if isinstance(env_id, str) and env_id:
            message_id = env_id
        elif amqp_id:
            message_id = amqp_id
        else:
            message_id = "sha256:" + hashlib.sha256(body).hexdigest()[:16]

        reason = _text(headers.get("x-fzt-reason", ""))
        if not reason and deaths:
            death = deaths[0]
            reason = f"{_text(death.get('reason', '?'))} ×{death.get('count', 1)}"
            if death.get("queue"):
                reason += f" (queue {_text(death['queue'])})"
        if not reason and self.service == UNROUTED:
            reason = "unrouted: no queue was bound for its routing key"

        routing_key = _text(headers.get("x-fzt-routing-key", ""))
        if not routing_key and deaths:
            keys = deaths[-1].get("routing-keys") or []
            routing_key = _text(keys[0]) if keys else ""
        if not routing_key and self.service == UNROUTED:
            routing_key = method.routing_key or ""
        if not routing_key and envelope and isinstance(envelope.get("type"), str):
            routing_key = envelope["type"]

        times = [d["time"] for d in deaths if isinstance(d.get("time"), datetime)]
        if times:
            first_seen = min(times)
        elif properties.timestamp:
            first_seen = datetime.fromtimestamp(properties.timestamp, timezone.utc)
        else:
            first_seen = None
        if first_seen is not None and first_seen.tzinfo is None:
            first_seen = first_seen.replace(tzinfo=timezone.utc)

        case_no = envelope.get("case_no") if envelope else None
        if not isinstance(case_no, str):
            case_no = _text(headers.get("case_no", ""))
        msg_type = envelope.get("type") if envelope else ""
        return DeadLetter(
            index=index, message_id=message_id, type=msg_type if isinstance(msg_type, str) else "",
            case_no=case_no, reason=reason, routing_key=routing_key, first_seen=first_seen,
            body=body, headers=headers, content_type=properties.content_type,
            content_encoding=properties.content_encoding, amqp_message_id=amqp_id,
            timestamp=properties.timestamp, envelope=envelope,
            replays=_int(headers.get("x-fzt-replay-count", 0)))

    def _select(self, held, message_id: str):
        message_id = (message_id or "").strip()
        if not message_id:
            raise DeadLetterError("no message id given")
        exact = [(t, m) for t, m in held if m.message_id == message_id]
        if exact:
            return exact
        ids = sorted({m.message_id for _t, m in held if m.message_id.startswith(message_id)})
        if len(ids) > 1:
            raise DeadLetterError(f"id prefix {message_id} is ambiguous: {', '.join(ids)}")
        if not ids:
            raise DeadLetterError(f"no message {message_id} in {self.queue} "
                                  f"({len(held)} message(s) there)")
        return [(t, m) for t, m in held if m.message_id == ids[0]]

    @staticmethod
    def _validate_fix(fixed_body) -> dict:
        if isinstance(fixed_body, (bytes, bytearray)):
            try:
                fixed_body = fixed_body.decode("utf-8")
            except UnicodeDecodeError:
                raise DeadLetterError("the fixed body is not UTF-8 text") from None
        if isinstance(fixed_body, str):
            try:
                fixed_body = json.loads(fixed_body)
            except json.JSONDecodeError as err:
                raise DeadLetterError(f"the fixed body is not JSON: {err}") from None
        try:
            parse_envelope(fixed_body)
        except InvalidMessage as err:
            raise DeadLetterError(f"fixed body refused, nothing sent: {err}") from None
        return fixed_body

    def _republish(self, channel, letter: DeadLetter, fixed: dict | None) -> Replayed:
        import pika
        from pika.exceptions import NackError, UnroutableError

        headers = {k: v for k, v in letter.headers.items() if k not in _DEATH_HEADERS}
        headers["x-fzt-replay-count"] = letter.replays + 1
        headers["x-fzt-replayed-from"] = self.queue
        warning = ""
        routing_key = letter.routing_key
        if fixed is not None:
            body = json.dumps(fixed, ensure_ascii=False).encode("utf-8")
            content_type, content_encoding = "application/json", "utf-8"
            message_id = str(fixed["id"])
            headers["case_no"] = fixed["case_no"]
            headers["x-fzt-fixed"] = True
            if fixed["type"] != routing_key:
                warning = (f"routing key {routing_key or '(none)'} replaced by the fixed body's "
                           f"type {fixed['type']}")
                routing_key = fixed["type"]
            if message_id != letter.message_id:
                warning = "; ".join(filter(None, [warning, (
                    f"the fixed body has a new id {message_id} (was {letter.message_id}): "
                    "services that applied the original will apply it again")]))
        else:
            body = letter.body
            content_type = letter.content_type
            content_encoding = letter.content_encoding
            message_id = letter.message_id if not letter.message_id.startswith("sha256:") else None
            if letter.amqp_message_id:
                message_id = letter.amqp_message_id
        if not routing_key:
            raise DeadLetterError(f"message {letter.message_id} has no original routing key; "
                                  "replay it with a fixed body (its type is the routing key)")
        properties = pika.BasicProperties(
            content_type=content_type, content_encoding=content_encoding, headers=headers,
            delivery_mode=2, message_id=message_id, timestamp=letter.timestamp)
        try:
            # Confirm mode: returns once the broker has the message, raises if it nacked it.
            channel.basic_publish(self.events_exchange, routing_key, body, properties,
                                  mandatory=True)
        except (NackError, UnroutableError) as err:
            raise DeadLetterError(f"the broker did not take {letter.message_id}: {err!r}; "
                                  "it stays in the dead-letter queue") from None
        return Replayed(letter.message_id, routing_key, fixed is not None, warning)

    def _audit(self, letters: list[DeadLetter], note: str) -> None:
        if not letters:
            return
        path = self.audit_path
        path.parent.mkdir(parents=True, exist_ok=True)
        at = self.clock().isoformat()
        with open(path, "a", encoding="utf-8") as fh:
            for letter in letters:
                described = letter.as_dict()
                record = {"at": at, "service": self.service, "queue": self.queue,
                          "message_id": letter.message_id, "type": letter.type,
                          "case_no": letter.case_no, "reason": letter.reason, "note": note,
                          "routing_key": letter.routing_key, "first_seen": described["first_seen"],
                          "headers": described["headers"], "body": described["body"],
                          "body_encoding": described["body_encoding"]}
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the message leaves the queue


# ---------------------------------------------------------------------------- functions


def list_dead(service: str, limit: int | None = 50, settings=None) -> Listing:
    return DeadLetters.from_settings(service, settings).list(limit)


def show(service: str, message_id: str, settings=None) -> list[DeadLetter]:
    return DeadLetters.from_settings(service, settings).show(message_id)


def replay(service: str, message_id: str | None = None, all: bool = False, fixed_body=None,
           settings=None) -> list[Replayed]:
    return DeadLetters.from_settings(service, settings).replay(message_id, all=all,
                                                               fixed_body=fixed_body)


def discard(service: str, message_id: str, note: str, settings=None) -> list[DeadLetter]:
    return DeadLetters.from_settings(service, settings).discard(message_id, note)


# ---------------------------------------------------------------------------- helpers


def _json_object(body: bytes) -> dict | None:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _text(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return _text(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# ---------------------------------------------------------------------------- command line
# ``fzt dead-letters …``; the group is registered in services/common/cli.py.

_QUEUE_ARG = click.argument("service", type=click.Choice(SERVICES + (UNROUTED,)))


def _tool(service: str) -> DeadLetters:
    try:
        return DeadLetters.from_settings(service)
    except DeadLetterError as err:
        raise click.ClickException(str(err)) from None


def _run(operation):
    try:
        return operation()
    except DeadLetterError as err:
        raise click.ClickException(str(err)) from None


def _clip(text: str, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _when(moment: datetime | None) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "—"


@click.group("dead-letters")
def dead_letters_cli():
    """Dead letters: list, show, replay (as is or fixed) and discard.

    SERVICE is the service whose dead-letter queue <prefix>.<service>.dead is meant, or
    "unrouted" for <prefix>.unrouted. Needs FZT_BROKER_URL to be the RabbitMQ the workers use.
    """


@dead_letters_cli.command("list")
@_QUEUE_ARG
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="show at most this many, from the head of the queue")
def dl_list(service, limit):
    """List dead letters without removing them."""
    tool = _tool(service)
    listing = _run(lambda: tool.list(limit))
    if not listing.letters:
        click.echo(f"{listing.queue}: empty")
        return
    shown = f"first {len(listing.letters)} of " if listing.truncated else ""
    click.echo(f"{listing.queue}: {shown}{listing.total} message(s), none removed")
    id_width = max(10, *(len(m.message_id) for m in listing.letters))
    type_width = max(4, *(len(m.type or "—") for m in listing.letters))
    case_width = max(7, *(len(m.case_no or "—") for m in listing.letters))
    row = f"{{:>3}}  {{:<{id_width}}}  {{:<{type_width}}}  {{:<{case_width}}}  {{:<20}}  {{}}"
    click.echo(row.format("#", "MESSAGE ID", "TYPE", "CASE NO", "FIRST SEEN", "REASON"))
    for letter in listing.letters:
        reason = letter.reason or "—"
        if letter.replays:
            reason = f"[replayed {letter.replays}×] {reason}"
        click.echo(row.format(letter.index, letter.message_id, letter.type or "—",
                              letter.case_no or "—", _when(letter.first_seen), _clip(reason, 100)))
        click.echo(f"{'':>3}  key {letter.routing_key or '—'} · body {letter.preview}")
    if listing.truncated:
        click.echo(f"… {listing.total - len(listing.letters)} more; use --limit to see them")


@dead_letters_cli.command("show")
@_QUEUE_ARG
@click.argument("message_id")
@click.option("--body", "body_only", is_flag=True,
              help="print only the body, as stored (to save, fix and replay with --body-file)")
def dl_show(service, message_id, body_only):
    """Show one dead letter in full (MESSAGE_ID may be a unique prefix)."""
    tool = _tool(service)
    letters = _run(lambda: tool.show(message_id))
    if body_only:
        for letter in letters:
            text = letter.body_text
            if text is None:
                raise click.ClickException(f"{letter.message_id}: the body is not UTF-8 text "
                                           f"({len(letter.body)} bytes)")
            if letter.envelope is not None:
                text = json.dumps(letter.envelope, ensure_ascii=False, indent=2)
            click.echo(text)
        return
    for letter in letters:
        described = letter.as_dict()
        click.echo(f"queue        {tool.queue} (position {letter.index})")
        click.echo(f"message id   {letter.message_id}")
        click.echo(f"type         {letter.type or '—'}")
        click.echo(f"case no      {letter.case_no or '—'}")
        click.echo(f"reason       {letter.reason or '—'}")
        click.echo(f"routing key  {letter.routing_key or '—'}")
        click.echo(f"first seen   {_when(letter.first_seen)}")
        occurred = letter.envelope.get("occurred_at") if letter.envelope else None
        click.echo(f"occurred at  {occurred or '—'}")
        click.echo(f"replays      {letter.replays}")
        click.echo(f"content      {letter.content_type or '—'} / {letter.content_encoding or '—'}, "
                   f"{len(letter.body)} bytes")
        click.echo("headers      " + json.dumps(described["headers"], ensure_ascii=False, indent=2)
                   .replace("\n", "\n             "))
        if letter.envelope is not None:
            body = json.dumps(letter.envelope, ensure_ascii=False, indent=2)
        elif described["body_encoding"] == "utf-8":
            body = described["body"]
        else:
            body = f"<{len(letter.body)} bytes, not UTF-8> hex {letter.body[:256].hex()}"
        click.echo("body\n" + body)
        if len(letters) > 1:
            click.echo("")


@dead_letters_cli.command("replay")
@_QUEUE_ARG
@click.argument("message_id", required=False)
@click.option("--all", "replay_all", is_flag=True, help="replay every message in the queue")
@click.option("--body-file", type=click.File("rb"),
              help="a fixed envelope (JSON) to send instead of the stored body; validated first")
def dl_replay(service, message_id, replay_all, body_file):
    """Republish to the events exchange with the original routing key, then remove it.

    A message is removed only after the broker confirmed its republish. If the consumer still
    fails on it, it comes back here.
    """
    if replay_all == bool(message_id):
        raise click.UsageError("give a MESSAGE_ID or --all (not both)")
    if body_file is not None and replay_all:
        raise click.UsageError("--body-file fixes one message: give its MESSAGE_ID, not --all")
    fixed = body_file.read() if body_file is not None else None
    tool = _tool(service)
    done = _run(lambda: tool.replay(message_id, all=replay_all, fixed_body=fixed))
    if not done:
        click.echo(f"{tool.queue}: nothing to replay")
        return
    for item in done:
        how = " (fixed body)" if item.fixed else ""
        click.echo(f"replayed {item.message_id} → {tool.events_exchange} {item.routing_key}{how}")
        if item.warning:
            click.echo(f"  warning: {item.warning}")
    click.echo(f"{len(done)} message(s) replayed and removed from {tool.queue}")


@dead_letters_cli.command("discard")
@_QUEUE_ARG
@click.argument("message_id")
@click.option("--note", required=True, help="why it is discarded (kept in the audit file)")
def dl_discard(service, message_id, note):
    """Remove a dead letter for good; it is written to the audit file first."""
    tool = _tool(service)
    gone = _run(lambda: tool.discard(message_id, note))
    for letter in gone:
        click.echo(f"discarded {letter.message_id} ({letter.type or 'no type'}, "
                   f"case {letter.case_no or '—'})")
    click.echo(f"recorded in {tool.audit_path}")
