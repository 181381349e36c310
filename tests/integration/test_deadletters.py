"""Dead-letter tooling on a real RabbitMQ: list without removing, show, replay (fixed or as is),
discard with an audit trail; the CLI through click's runner."""
import json
import time
import uuid

import pika
from click.testing import CliRunner
from kombu import Connection, Producer

from services.common.bus.deadletters import DeadLetterError, DeadLetters, pika_parameters
from services.common.bus.messages import make_envelope
from services.common.cli import main
from services.common.models import InboxMessage, WorkflowInstance
from services.common.worker import Worker
from tests.support.db import count
from tests.support.http import wait_for

CASE = "210902-20261125-0007"


def submitted_body(case_no=CASE):
    return {"case_no": case_no, "district": "210902", "name": "张三", "phone": "13800001234",
            "description": "楼上漏水", "category": "", "channel": "web", "location": "",
            "submitted_at": "2026-11-25T09:00:00+00:00"}


def raw_envelope(body, case_no=CASE, message_id=None):
    return {"id": message_id or str(uuid.uuid4()), "type": "intake.case_submitted", "version": 1,
            "occurred_at": "2026-11-25T09:00:00+00:00", "case_no": case_no, "source": "intake",
            "body": body}


def publish(amqp_url, service, payload, routing_key="intake.case_submitted", **kwargs):
    with Connection(amqp_url) as conn:
        Producer(conn.default_channel).publish(payload, exchange=service.topology.exchange,
                                               routing_key=routing_key, **kwargs)


def ids(listing):
    return [letter.message_id for letter in listing.letters]


def run_cli(args, pg_service, var_dir):
    env = {"FZT_BROKER_URL": pg_service.amqp_url, "FZT_BUS_PREFIX": pg_service.prefix,
           "FZT_VAR_DIR": str(var_dir)}
    return CliRunner().invoke(main, ["dead-letters", *args], env=env, catch_exceptions=False)


def test_list_show_replay_fixed_and_poison_and_discard(pg_service, tmp_path):
    dispatch = pg_service("dispatch")
    tool = DeadLetters(pg_service.amqp_url, pg_service.prefix, "dispatch", tmp_path / "var")
    worker = Worker(dispatch).start()
    try:
        # Three dead letters: undecodable bytes, an envelope missing required body fields
        # (to be fixed and replayed), and another invalid one (to be discarded).
        publish(pg_service.amqp_url, dispatch, b"\xff not json", content_type="application/json",
                content_encoding="binary")
        broken = raw_envelope({"case_no": CASE, "name": "张三"})
        publish(pg_service.amqp_url, dispatch, broken, serializer="json")
        junk = raw_envelope({"case_no": "JUNK-1"}, case_no="JUNK-1")
        publish(pg_service.amqp_url, dispatch, junk, serializer="json")
        wait_for(lambda: tool.list(None).total == 3, what="3 dead letters")

        # Listing is complete, in queue order, and removes nothing (twice → the same).
        first, second = tool.list(None), tool.list(None)
        assert first.total == second.total == 3 and not first.truncated
        assert ids(first) == ids(second)
        assert [m.index for m in first.letters] == [1, 2, 3]
        assert [(m.reason, m.routing_key) for m in first.letters] == \
               [(m.reason, m.routing_key) for m in second.letters]
        poison, fixable, discardable = first.letters
        assert poison.message_id.startswith("sha256:") and "cannot decode" in poison.reason
        assert fixable.message_id == broken["id"] and fixable.case_no == CASE
        assert fixable.type == "intake.case_submitted" and "district" in fixable.reason
        assert all(m.routing_key == "intake.case_submitted" for m in first.letters)
        # A limited listing says there are more, and still removes nothing.
        head = tool.list(1)
        assert head.truncated and head.total == 3 and ids(head) == ids(first)[:1]
        assert ids(tool.list(None)) == ids(first)

        # The CLI: the table shows every message with its reason; nothing is removed.
        result = run_cli(["list", "dispatch"], pg_service, tmp_path / "var")
        assert result.exit_code == 0, result.output
        assert "3 message(s), none removed" in result.output
        for letter in first.letters:
            assert letter.message_id in result.output
        assert "cannot decode" in result.output and "district" in result.output
        assert ids(tool.list(None)) == ids(first)

        # Show one (by unique id prefix), in full.
        result = run_cli(["show", "dispatch", broken["id"][:8]], pg_service, tmp_path / "var")
        assert result.exit_code == 0, result.output
        assert broken["id"] in result.output and CASE in result.output
        assert "x-fzt-reason" in result.output and '"name": "张三"' in result.output
        result = run_cli(["show", "dispatch", broken["id"], "--body"], pg_service, tmp_path / "var")
        assert json.loads(result.output) == broken

        # An invalid fix is refused with the validation error; the message stays.
        bad_fix = tmp_path / "bad.json"
        bad_fix.write_text(json.dumps(dict(broken, body={"case_no": CASE})), encoding="utf-8")
        result = run_cli(["replay", "dispatch", broken["id"], "--body-file", str(bad_fix)],
                         pg_service, tmp_path / "var")
        assert result.exit_code == 1 and "refused" in result.output and "district" in result.output
        assert broken["id"] in ids(tool.list(None))

        # The fixed envelope (same id) is replayed and applied by dispatch; it leaves the queue.
        fix = tmp_path / "fix.json"
        fix.write_text(json.dumps(dict(broken, body=submitted_body()), ensure_ascii=False),
                       encoding="utf-8")
        result = run_cli(["replay", "dispatch", broken["id"], "--body-file", str(fix)],
                         pg_service, tmp_path / "var")
        assert result.exit_code == 0, result.output
        assert f"replayed {broken['id']}" in result.output and "(fixed body)" in result.output
        wait_for(lambda: count(dispatch, WorkflowInstance) == 1, what="the fixed case applied")
        assert count(dispatch, InboxMessage, InboxMessage.message_id == broken["id"]) == 1
        assert ids(tool.list(None)) == [poison.message_id, junk["id"]]

        # The poison message replayed as is fails again and comes back, marked as replayed.
        [done] = tool.replay(poison.message_id)
        assert done.routing_key == "intake.case_submitted" and not done.fixed
        back = wait_for(lambda: [m for m in tool.list(None).letters
                                 if m.message_id == poison.message_id], what="poison back")
        assert back[0].replays == 1 and "cannot decode" in back[0].reason
        assert back[0].body == b"\xff not json"

        # Discard needs a note; with one it is gone from the queue and kept in the audit file.
        result = run_cli(["discard", "dispatch", junk["id"]], pg_service, tmp_path / "var")
        assert result.exit_code == 2 and "--note" in result.output
        result = run_cli(["discard", "dispatch", junk["id"], "--note", "测试数据，无需处理"],
                         pg_service, tmp_path / "var")
        assert result.exit_code == 0, result.output
        assert junk["id"] not in ids(tool.list(None))
        [line] = (tmp_path / "var" / "dead-letters-discarded.jsonl").read_text("utf-8").splitlines()
        audit = json.loads(line)
        assert audit["message_id"] == junk["id"] and audit["note"] == "测试数据，无需处理"
        assert audit["service"] == "dispatch" and audit["type"] == "intake.case_submitted"
        assert audit["case_no"] == "JUNK-1" and "invalid message" in audit["reason"]
        assert json.loads(audit["body"]) == junk and audit["at"]

        # Unknown ids are errors, not silent no-ops.
        try:
            tool.discard("no-such-id", "x")
        except DeadLetterError as err:
            assert "no message no-such-id" in str(err)
        else:
            raise AssertionError("discarding an unknown id must fail")
        assert ids(tool.list(None)) == [poison.message_id]
    finally:
        worker.stop()
    assert count(dispatch, WorkflowInstance) == 1


def test_broker_dead_letters_after_the_delivery_limit_and_a_failing_handler(pg_service, tmp_path):
    dispatch = pg_service("dispatch", delivery_limit=1)
    tool = DeadLetters(pg_service.amqp_url, pg_service.prefix, "dispatch", tmp_path)
    with dispatch.topology.connection() as conn:
        dispatch.topology.declare(conn.default_channel, "dispatch", dispatch.routing_keys())
    envelope = make_envelope("intake.case_submitted", submitted_body(), "intake", dispatch.clock.now())
    publish(pg_service.amqp_url, dispatch, envelope, serializer="json", message_id=envelope["id"])

    # A consumer that keeps crashing: RabbitMQ dead-letters after the delivery limit (x-death).
    connection = pika.BlockingConnection(pika_parameters(pg_service.amqp_url))
    try:
        channel = connection.channel()
        for _ in range(10):
            method, _props, _body = channel.basic_get(f"{pg_service.prefix}.dispatch")
            if method is None:
                if tool.list(None).total:
                    break
                time.sleep(0.1)
                continue
            channel.basic_nack(method.delivery_tag, requeue=True)
    finally:
        connection.close()
    [letter] = wait_for(lambda: tool.list(None).letters, what="broker dead letter")
    assert letter.message_id == envelope["id"] and letter.case_no == CASE
    assert letter.reason.startswith("delivery_limit") and f"{pg_service.prefix}.dispatch" in letter.reason
    assert letter.routing_key == "intake.case_submitted" and letter.first_seen is not None

    # Replayed while the handler still fails: retried, then dead-lettered by the consumer.
    def failing(service, uow, envelope):
        raise RuntimeError("department directory unavailable")

    listeners = dispatch.definition.listeners.by_type.setdefault("intake.case_submitted", [])
    listeners.append(failing)
    worker = Worker(dispatch).start()
    try:
        [done] = tool.replay(envelope["id"])
        assert done.routing_key == "intake.case_submitted"
        again = wait_for(lambda: [m for m in tool.list(None).letters if m.replays == 1],
                         what="dead-lettered again")
        assert "department directory unavailable" in again[0].reason
        assert again[0].message_id == envelope["id"]
        assert count(dispatch, WorkflowInstance) == 0
        listeners.remove(failing)

        # The cause is fixed: replay --all through the CLI applies it.
        result = run_cli(["replay", "dispatch", "--all"], pg_service, tmp_path)
        assert result.exit_code == 0, result.output
        assert "1 message(s) replayed" in result.output
        wait_for(lambda: count(dispatch, WorkflowInstance) == 1, what="applied after replay")
        assert tool.list(None).total == 0
        result = run_cli(["list", "dispatch"], pg_service, tmp_path)
        assert result.exit_code == 0 and "empty" in result.output
    finally:
        if failing in listeners:
            listeners.remove(failing)
        worker.stop()


def test_unrouted_messages_are_listed_and_replayed(pg_service, tmp_path):
    dispatch = pg_service("dispatch")
    with dispatch.topology.connection() as conn:
        dispatch.topology.declare(conn.default_channel, "dispatch", dispatch.routing_keys())
    envelope = raw_envelope({"case_no": CASE}, message_id=str(uuid.uuid4()))
    publish(pg_service.amqp_url, dispatch, envelope, routing_key="nobody.listens", serializer="json")
    tool = DeadLetters(pg_service.amqp_url, pg_service.prefix, "unrouted", tmp_path)
    [letter] = wait_for(lambda: tool.list(None).letters, what="unrouted message")
    assert letter.message_id == envelope["id"] and letter.routing_key == "nobody.listens"
    assert letter.reason.startswith("unrouted")
    # Still nobody bound: replay puts it back (the routing key is kept).
    [done] = tool.replay(envelope["id"])
    assert done.routing_key == "nobody.listens"
    [back] = wait_for(lambda: tool.list(None).letters, what="unrouted again")
    assert back.replays == 1 and back.routing_key == "nobody.listens"


def test_the_cli_refuses_the_in_memory_bus_and_misuse(tmp_path):
    runner = CliRunner()
    env = {"FZT_BROKER_URL": "memory://localhost//", "FZT_VAR_DIR": str(tmp_path)}
    result = runner.invoke(main, ["dead-letters", "list", "dispatch"], env=env)
    assert result.exit_code == 1 and "real RabbitMQ" in result.output
    result = runner.invoke(main, ["dead-letters", "replay", "dispatch"], env=env)
    assert result.exit_code == 2 and "--all" in result.output
    fix = tmp_path / "fix.json"
    fix.write_text("{}", encoding="utf-8")
    result = runner.invoke(main, ["dead-letters", "replay", "dispatch", "--all", "--body-file",
                                  str(fix)], env=env)
    assert result.exit_code == 2 and "not --all" in result.output
