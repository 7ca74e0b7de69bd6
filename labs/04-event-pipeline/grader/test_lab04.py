"""Lab 4 checks: a Kafka order processor that loses nothing and does nothing twice, under real
faults, crashes, rebalances and shutdowns; its dead letters and their re-drive."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka.admin import AdminClient
from support import (
    DLQ_HEADERS,
    CommitLog,
    Ledgered,
    Processor,
    Processors,
    RedisStream,
    SqsQueue,
    Stream,
    capture_rate,
    metric_total,
    plain_captures,
    progress_or_fail,
    wait_for,
)  # fmt: skip

from opslab.grading.fixtures import LearnerError, learner_file, python, run_learner
from opslab.grading.rubric import check
from opslab.grading.sandbox import Sandbox

ERROR_CLASSES = {"malformed", "rejected", "retries-exhausted"}
ORDERS_AT_SPEED = 1000
"""Orders on the full topic of the throughput check."""


def all_accounted_for(stream: Ledgered, timeout: float, processor_alive: Callable[[], None] | None = None) -> bool:
    """Wait until every valid order is captured or dead-lettered as retries-exhausted, and every
    poison order dead-lettered."""

    def done() -> bool:
        if processor_alive:
            processor_alive()
        captured = stream.summary()["orders"]
        if captured >= len(stream.valid_ids) and not stream.poison_ids:
            return True
        letters = stream.dead_letters()
        exhausted = {k for k, h, _ in letters if h.get("error-class") == "retries-exhausted"} & stream.valid_ids
        if captured + len(exhausted) < len(stream.valid_ids) or len(letters) - len(exhausted) < len(stream.poison_ids):
            return False
        return stream.valid_ids <= set(stream.captured()) | exhausted

    return bool(wait_for(done, timeout, interval=1))


def lost_and_doubled(stream: Ledgered) -> tuple[list[str], list[str]]:
    counts = stream.captured()
    lost = sorted(stream.valid_ids - set(counts))
    doubled = sorted(order for order, n in counts.items() if n > 1)
    return lost, doubled


def committed_past_uncaptured(stream: Stream, failing: set[str]) -> bool:
    """Is an offset committed beyond a valid order that was not captured (yet)? Orders that always
    fail (``failing``) do not count: a correct processor commits past them once they are on a retry topic."""
    committed = stream.committed()
    captured = stream.captured()
    return any(
        s.valid and s.offset < committed.get(s.partition, -1) and s.order_id not in captured
        for s in stream.sent.values()
        if s.order_id not in failing
    )


def describe(ids: list[str]) -> str:
    return f"{len(ids)} ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})"


def assert_none_lost_or_doubled(stream: Ledgered, finished: bool, within: str, how: str) -> None:
    """Every valid order captured once after a crash (or dead-lettered after 3 real tries or more)."""
    lost, doubled = lost_and_doubled(stream)
    exhausted = {o for o, fields, _ in stream.dead_letters() if fields.get("error-class") == "retries-exhausted"}
    lost = [order for order in lost if order not in exhausted or len(stream.attempts(order)) < 3]
    assert not lost, f"{describe(lost)} orders were never captured{'' if finished else within}: {how}"
    assert not doubled, f"{describe(doubled)} orders were captured twice (no idempotency)"


def assert_dead_lettered_once(stream: Ledgered, where: str, stuck: str, unknown: str, tries: str) -> None:
    """Exactly the poison orders (malformed or rejected) and ``stuck`` (retries-exhausted, after
    exactly 3 tries) are on ``where``, once each, with the bytes they were sent with."""
    letters = stream.dead_letters()
    assert letters, f"nothing arrived on {where} within 60 s (6 poison orders and one that always fails)"
    seen: dict[str, list[str]] = {}
    for order, fields, value in letters:
        assert order != "?", unknown.format(fields=sorted(fields))
        assert value == stream.sent[order].value, f"the dead letter of {order} does not carry the order as it was sent"
        seen.setdefault(order, []).append(fields.get("error-class", ""))
    expected = stream.poison_ids | {stuck}
    missing = sorted(expected - set(seen))
    assert not missing, f"{describe(missing)} orders that cannot succeed are not on {where}"
    wrong = sorted(set(seen) - expected)
    assert not wrong, f"{describe(wrong)} orders that could succeed were dead-lettered"
    twice = sorted(order for order, classes in seen.items() if len(classes) > 1)
    assert not twice, f"{describe(twice)} orders are on {where} more than once"
    for order in sorted(stream.poison_ids):
        assert seen[order][0] in {"malformed", "rejected"}, (
            f"poison order {order} reached {where} with error-class {seen[order][0] or '(none)'!r}: dead-letter it "
            "yourself at once, with the reason"
        )
        tried = len(stream.attempts(order))
        assert tried <= 2, (  # one retry is allowed: a 4xx answered after the client's timeout looks transient
            f"poison order {order} was tried {tried} times; a 4xx will not change on a retry"
        )
    assert seen[stuck][0] == "retries-exhausted", f"the failing order has error-class {seen[stuck][0]!r}"
    tried = len(stream.attempts(stuck))
    assert tried == 3, f"the failing order was tried {tried} times before it was dead-lettered; {tries} is 3"


def alive_or_fail(processor: Processor) -> Callable[[], None]:
    def check_alive() -> None:
        if not processor.alive():
            raise LearnerError(
                f"{processor.program} exited with status {processor.proc.returncode}: {processor.tail()}"
            )

    return check_alive


# ---------------------------------------------------------------------- exactly once


@check(points=6, section="Processor", timeout=180, hint="Capture with the order id as Idempotency-Key (or remember "
       "captured ids), commit only after the capture, and send transient failures to a retry topic.")  # fmt: skip
def test_every_order_is_captured_exactly_once_despite_faults(open_stream: Callable[..., Stream],
                                                            started: Processors) -> None:  # fmt: skip
    """with 20 % of captures failing and some answers held past any timeout, every order is captured once"""
    stream = open_stream("once")
    stream.fault("error-rate", errorRate=0.2)
    stream.fault("hang", hangRate=0.02, hangMs=6000)
    stream.produce(600)
    processor = started.start(stream)
    finished = all_accounted_for(stream, 140, alive_or_fail(processor))
    lost, doubled = lost_and_doubled(stream)
    exhausted = {key for key, headers, _ in stream.dead_letters() if headers.get("error-class") == "retries-exhausted"}
    lost = [order for order in lost if order not in exhausted or len(stream.attempts(order)) < 3]
    assert not doubled, (
        f"{describe(doubled)} orders were captured twice: a retry after a timeout repeated a capture that had "
        "happened (send the order id as Idempotency-Key)"
    )
    assert not lost, f"{describe(lost)} orders were never captured{'' if finished else ' within 140 s'}"


@check(points=4, section="Processor", timeout=90, hint="Send what can never succeed to <topic>.dlq at once, with "
       "the headers of README task 1, and keep the original bytes.")  # fmt: skip
def test_poison_orders_go_to_the_dead_letter_topic_with_their_story(
    open_stream: Callable[..., Stream], started: Processors
) -> None:
    """each poison order lands once on <topic>.dlq, unchanged, with error class, attempts and origin"""
    stream = open_stream("poison")
    sent = stream.produce(200, poison=30)
    processor = started.start(stream)
    all_accounted_for(stream, 60, alive_or_fail(processor))
    letters = stream.dead_letters()
    assert letters, f"nothing arrived on {stream.dlq} within 60 s (30 poison orders were sent)"
    by_origin = {(s.partition, s.offset): s for s in sent}
    seen: dict[str, int] = {}
    for key, headers, value in letters:
        missing = [h for h in DLQ_HEADERS if h not in headers]
        assert not missing, f"a dead letter lacks the header(s) {', '.join(missing)} (it has {sorted(headers)})"
        assert headers["error-class"] in ERROR_CLASSES, (
            f"error-class {headers['error-class']!r} is not one of {', '.join(sorted(ERROR_CLASSES))}"
        )
        try:
            origin = (int(headers["original-partition"]), int(headers["original-offset"]))
            attempts = int(headers["attempts"])
        except ValueError:
            raise AssertionError(
                f"original-partition, original-offset and attempts must be numbers: {headers}"
            ) from None
        record = by_origin.get(origin)
        assert headers["original-topic"] == stream.topic and record is not None, (
            f"a dead letter names {headers['original-topic']}/{origin}, which is not where an order was sent"
        )
        assert record.order_id not in stream.valid_ids, f"the valid order {record.order_id} was dead-lettered"
        assert attempts >= 1, f"attempts is {attempts} for {record.order_id}"
        assert key == record.order_id, f"the dead letter of {record.order_id} lost its key (it has {key!r})"
        assert value == record.value, (
            f"the dead letter of {record.order_id} does not carry the original bytes (a person must see what came in)"
        )
        assert headers["error-class"] != "retries-exhausted", (
            f"poison order {record.order_id} was retried until exhausted: a 4xx or malformed order cannot succeed, "
            "dead-letter it at once"
        )
        tried = len(stream.attempts(record.order_id))
        assert tried <= 2, (  # one retry is allowed: a 4xx answered after the client's timeout looks transient
            f"poison order {record.order_id} was sent to fulfilment {tried} times: a 4xx will not change on a retry"
        )
        seen[record.order_id] = seen.get(record.order_id, 0) + 1
    missing_ids = sorted(stream.poison_ids - set(seen))
    twice = sorted(order for order, n in seen.items() if n > 1)
    assert not missing_ids, f"{describe(missing_ids)} poison orders are not on {stream.dlq}"
    assert not twice, f"{describe(twice)} poison orders are on {stream.dlq} more than once"


# ---------------------------------------------------------------------- crashes and shutdowns


@check(points=6, section="Processor", timeout=240, hint="A crash must cost neither an order nor a double capture: "
       "commit offsets only after the effect, and make the effect idempotent. A restart waits for the dead member's "
       "session to time out: set session.timeout.ms to 10 s or less.")  # fmt: skip
def test_kill_9_and_restart_lose_nothing_and_capture_nothing_twice(
    open_stream: Callable[..., Stream], started: Processors
) -> None:
    """killed with SIGKILL three times mid-stream and restarted, it still captures every order once"""
    stream = open_stream("crash")
    # Captures take 20 ms, so a crash always finds work taken from Kafka but not yet done. Three
    # orders always fail: a retry kept only in memory, with its offset committed, dies with the process.
    stream.fault("latency", latencyMs=20)
    stream.produce(3)
    failing = set(stream.valid_ids)
    stream.fault("outage", orders=sorted(failing))
    stream.produce(1497)
    processor = started.start(stream)
    for mark in (250, 600, 950):
        progress_or_fail(stream, processor, mark, 60)
        # Slow every capture down, so whatever commits offsets before the effect (an auto-commit,
        # every 5 s by default, or a commit at consume time) is caught in the act: the crash comes
        # the moment an offset is committed past an order not captured, or after 9 s.
        slow = stream.fault("latency", latencyMs=1500)
        wait_for(lambda: committed_past_uncaptured(stream, failing), 9, interval=0.5)
        processor.kill()
        stream.clear_fault(slow)
        processor = started.start(stream)
    finished = all_accounted_for(stream, 90, alive_or_fail(processor))
    assert_none_lost_or_doubled(stream, finished, " within 90 s", "offsets were committed before their capture, "
                                "or before a retry was written to a topic (a retry held in memory dies in a crash)")  # fmt: skip


@check(points=4, section="Processor", timeout=120, hint="On SIGTERM stop taking new messages, finish the one in "
       "hand, commit synchronously, close the consumer, exit 0 (within 10 s).")  # fmt: skip
def test_sigterm_commits_and_exits_within_10_s(open_stream: Callable[..., Stream], started: Processors) -> None:
    """SIGTERM mid-stream: it exits 0 within 10 s, with every capture committed"""
    stream = open_stream("term")
    stream.fault("latency", latencyMs=3)
    stream.produce(3000)
    processor = started.start(stream)
    progress_or_fail(stream, processor, 300, 60)
    took = processor.terminate(grace=10)
    assert took is not None, "processor.py was still running 10 s after SIGTERM (then killed)"
    assert processor.proc.returncode == 0, f"processor.py exited {processor.proc.returncode} on SIGTERM"
    captured = set(stream.captured())
    committed = stream.committed()
    beyond = sorted(o for o in captured if stream.sent[o].offset >= committed.get(stream.sent[o].partition, -1))
    assert not beyond, (
        f"{describe(beyond)} orders were captured but their offsets not committed at shutdown: a restart "
        "processes them again"
    )
    below = sorted(o for o, s in stream.sent.items() if s.offset < committed.get(s.partition, -1) and o not in captured)
    assert not below, f"{describe(below)} orders were committed but never captured"
    assert took <= 10
    admin = AdminClient({"bootstrap.servers": stream.kafka})

    def group_empty() -> bool:
        return not admin.describe_consumer_groups([stream.group])[stream.group].result(10).members

    # A LeaveGroup may reach the broker a moment after the exit; a member that never sent one stays
    # until its session times out (10 s and more).
    assert wait_for(group_empty, 3), (
        "processor.py exited without closing its consumer: the group waits for its session to time out"
    )


@check(points=4, section="Processor", timeout=150, hint="Batch the commits (asynchronous, every second or so, "
       "and synchronous only on revocation and shutdown); keep one HTTP client; no sleep or flush per message.")  # fmt: skip
def test_it_keeps_up_and_batches_its_commits(open_stream: Callable[..., Stream], started: Processors) -> None:
    """on a full topic it captures at least half as fast as a plain consumer, committing at most once per 5 orders"""
    stream = open_stream("throughput")
    stream.produce(ORDERS_AT_SPEED)
    commits = CommitLog(stream.kafka, stream.group, stream.topic)
    yardstick = f"{stream.ledger}-yardstick"
    # Both run at once, so both see the same machine: its load cancels out of the ratio.
    plain = threading.Thread(target=plain_captures, args=(stream, yardstick, ORDERS_AT_SPEED, 100), daemon=True)
    processor = started.start(stream)
    plain.start()
    finished = all_accounted_for(stream, 100, alive_or_fail(processor))
    plain.join(timeout=10)
    assert finished, f"only {stream.summary()['orders']} of {ORDERS_AT_SPEED} orders were captured within 100 s"
    mine, theirs = capture_rate(stream.captures()), capture_rate(stream.captures(yardstick))
    assert mine >= 0.5 * theirs, (
        f"{mine:.0f} captures/s, less than half of the {theirs:.0f}/s of a plain consumer that captures the same "
        "orders with no guarantees: something in your loop costs more than the capture"
    )
    processed = metric_total(processor, "orders_processed_total")
    assert processed is not None and processed >= ORDERS_AT_SPEED, (
        f"orders_processed_total on 127.0.0.1:{processor.metrics_port}/metrics is {processed}, not at least "
        f"{ORDERS_AT_SPEED} (README task 1: the metrics)"
    )
    records = commits.count()
    assert records <= ORDERS_AT_SPEED / 5, (
        f"{records} offset commits for {ORDERS_AT_SPEED} orders: commit a batch of finished work every second or "
        "so, not after each message"
    )


@check(points=4, section="Processor", timeout=180, hint="Commit what is done in the on_revoke callback, so the "
       "member that takes a partition over starts where you stopped.")  # fmt: skip
def test_a_rebalance_hands_partitions_over_without_redoing_work(
    open_stream: Callable[..., Stream], started: Processors
) -> None:
    """three more processors join, then the first leaves: no gap, and no order processed twice"""
    stream = open_stream("rebalance")
    stream.produce(1500)  # no added latency: work finished between two commits is what a handover risks
    admin = AdminClient({"bootstrap.servers": stream.kafka})

    def members_with_partitions() -> int:
        group = admin.describe_consumer_groups([stream.group])[stream.group].result(10)
        return sum(1 for m in group.members if m.assignment.topic_partitions)

    first = started.start(stream)
    done = progress_or_fail(stream, first, 300, 60)
    for joining in (2, 3, 4):  # each join takes partitions away from a member that was working on them
        stream.produce(300)  # however fast it is, there is work in hand when the partitions move
        member = started.start(stream)
        assert wait_for(lambda n=joining: members_with_partitions() >= n, 45, interval=0.5), (
            f"processor number {joining} never got partitions of its own"
        )
        done = progress_or_fail(stream, member, done + 150, 60)
    assert first.terminate(grace=10) is not None, "the first processor did not leave within 10 s of SIGTERM"
    all_accounted_for(stream, 90, alive_or_fail(started.running[-1]))
    lost, doubled = lost_and_doubled(stream)
    assert not lost, f"{describe(lost)} orders were lost in the rebalances"
    assert not doubled, f"{describe(doubled)} orders were captured twice in the rebalances"
    redone = stream.replays()
    shown = "; ".join(
        f"{again['order_id']}: {before['status']} in {before['seconds']:.2f} s, again {again['at'] - before['at']:.1f} s later"
        for before, again in redone[:3]
    )
    assert len(redone) <= 3, (
        f"{len(redone)} captures were repeated (absorbed by idempotency) across the rebalances ({shown}): "
        "partitions were handed over without committing what was done"
    )


# ---------------------------------------------------------------------- retries


@check(points=5, section="Retries", timeout=120, hint="Retry later, not now: exponential backoff with jitter on a "
       "retry topic (or paused partition), so the orders behind a failing one keep flowing.")  # fmt: skip
def test_retries_back_off_and_do_not_block_the_partition(
    open_stream: Callable[..., Stream], started: Processors
) -> None:
    """a failing order is retried with growing pauses while the orders behind it on its partition go through"""
    stream = open_stream("backoff", partitions=1)
    stream.produce(1)
    stuck = next(iter(stream.valid_ids))
    stream.fault("outage", orders=[stuck])
    stream.produce(30)
    processor = started.start(stream)
    check_alive = alive_or_fail(processor)

    def four_tries() -> bool:
        check_alive()
        return len(stream.attempts(stuck)) >= 4

    wait_for(four_tries, 60)
    tries = [a["at"] for a in stream.attempts(stuck)][:4]
    assert len(tries) >= 4, f"order {stuck} was tried {len(tries)} times in 60 s; at least 4 tries are expected"
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    shown = ", ".join(f"{g:.2f}" for g in gaps)
    assert min(gaps) >= 0.3, (
        f"a retry of {stuck} came {min(gaps):.3f} s after the try before (pauses: {shown} s): a hot loop"
    )
    assert gaps[-1] >= 1.5 * min(gaps[:-1]), f"the pauses between the tries of {stuck} do not grow: {shown} s"
    others = [c["captured_at"] for c in stream.captures() if c["order_id"] != stuck]
    ahead = [t for t in others if t < tries[-1]]
    assert len(others) == 30 and len(ahead) >= 15, (
        f"only {len(ahead)} of the 30 orders behind {stuck} on its partition were captured before its 4th try: "
        "the retries hold the partition up"
    )


# ---------------------------------------------------------------------- re-drive


def redrive(lab_path: Path, sandbox: Sandbox, stream: Stream, *args: str) -> str:
    script = learner_file(lab_path, "redrive.py")
    result = run_learner(
        [python(), str(script), *args, "--bootstrap", stream.kafka, "--topic", stream.topic], cwd=lab_path,
        timeout=60, what="redrive.py", sandbox=sandbox,
    )  # fmt: skip
    if result.returncode != 0:
        raise LearnerError(f"redrive.py {' '.join(args)} exited {result.returncode}: {result.tail()}")
    return result.stdout


def listed_orders(output: str, command: str) -> list[str]:
    """The ``order`` of each JSON line ``redrive.py list`` printed, sorted."""
    orders = []
    for line in filter(None, (line.strip() for line in output.splitlines())):
        try:
            record = json.loads(line)
        except ValueError:
            raise LearnerError(f"`{command}` printed a line that is not JSON: {line[:120]}") from None
        if not isinstance(record, dict) or not isinstance(record.get("order"), str):
            raise LearnerError(f'`{command}` printed a line with no "order" (the order id): {line[:120]}')
        orders.append(record["order"])
    return sorted(orders)


@check(points=4, section="Re-drive", timeout=150, hint="redrive.py apply --error-class C sends the matching dead "
       "letters back to the main topic and records each one, so a second run sends nothing.")  # fmt: skip
def test_redrive_sends_fixed_dead_letters_back_once(
    lab_path: Path, sandbox: Sandbox, open_stream: Callable[..., Stream], started: Processors
) -> None:
    """`list` shows the dead letters asked for; after a fix, re-driving the exhausted ones captures each once"""
    stream = open_stream("redrive")
    stream.produce(12)
    broken = sorted(stream.valid_ids)[:6]
    outage = stream.fault("outage", orders=broken)
    stream.produce(100, poison=9)
    processor = started.start(stream)

    def exhausted() -> set[str]:
        alive_or_fail(processor)()
        return {k for k, h, _ in stream.dead_letters() if h.get("error-class") == "retries-exhausted"}

    if not wait_for(lambda: exhausted() >= set(broken), 90, interval=1):
        tries = {order: len(stream.attempts(order)) for order in sorted(set(broken) - exhausted())}
        raise AssertionError(
            f"the orders failing for good ({len(broken)}) did not all reach {stream.dlq} as retries-exhausted in "
            f"90 s; tries so far of those missing: {tries}"
        )
    command = "redrive.py list --error-class retries-exhausted"
    listed = listed_orders(redrive(lab_path, sandbox, stream, "list", "--error-class", "retries-exhausted"), command)
    assert listed == sorted(broken), (
        f"`{command}` listed {describe(listed)}; the dead letters of that class are {describe(sorted(broken))}"
    )
    command = f"redrive.py list --order {broken[0]}"
    listed = listed_orders(redrive(lab_path, sandbox, stream, "list", "--order", broken[0]), command)
    assert listed == [broken[0]], f"`{command}` listed {describe(listed)}, not that one dead letter"
    stream.clear_fault(outage)  # the fix
    ends = stream.ends()
    redrive(lab_path, sandbox, stream, "apply", "--error-class", "retries-exhausted")
    sent_back = stream.ends() - ends
    assert sent_back == len(broken), (
        f"`redrive.py apply --error-class retries-exhausted` put {sent_back} messages on {stream.topic}; "
        f"{len(broken)} dead letters have that class"
    )
    assert wait_for(lambda: set(broken) <= set(stream.captured()), 45, interval=1), (
        f"re-driven orders were not captured within 45 s: {sorted(set(broken) - set(stream.captured()))}"
    )
    ends = stream.ends()
    redrive(lab_path, sandbox, stream, "apply", "--error-class", "retries-exhausted")
    again = stream.ends() - ends
    assert again == 0, f"a second `redrive.py apply` sent {again} dead letters again: each must go back once"
    _, doubled = lost_and_doubled(stream)
    assert not doubled, f"{describe(doubled)} orders were captured twice after the re-drive"


# ---------------------------------------------------------------------- Redis Streams


@check(points=5, section="Redis Streams", timeout=150, hint="XACK an entry only after its capture (a failed one "
       "stays pending); every loop, XAUTOCLAIM the entries idle longer than --claim-after, a dead consumer's "
       "included; send the order id as Idempotency-Key.")  # fmt: skip
def test_streams_claims_what_a_dead_consumer_left_and_captures_it_once(
    open_redis_stream: Callable[[str], RedisStream], started: Processors
) -> None:
    """a consumer killed mid-stream (10 % of captures failing) leaves entries pending; another claims them: all captured once"""
    stream = open_redis_stream("claim")
    stream.fault("error-rate", errorRate=0.1)
    stream.fault("latency", latencyMs=20)
    stream.produce(300)
    first = started.start_streams(stream, "first")
    progress_or_fail(stream, first, 80, 60)
    # Slow the captures down and crash the consumer the moment an entry is acknowledged before
    # its capture (or after 9 s): what it held pending is the next consumer's to claim.
    slow = stream.fault("latency", latencyMs=1500)
    wait_for(stream.acked_past_uncaptured, 9, interval=0.5)
    first.kill()
    stream.clear_fault(slow)
    second = started.start_streams(stream, "second")
    finished = all_accounted_for(stream, 90, alive_or_fail(second))
    assert_none_lost_or_doubled(stream, finished, " within 90 s", "acknowledged before their capture, or left "
                                "pending and never claimed (by the dead consumer, or after a failed capture)")  # fmt: skip
    assert wait_for(lambda: not stream.pending(), 10), (
        f"{len(stream.pending())} entries are still pending in {stream.group}: acknowledge each once it is done"
    )


@check(points=4, section="Redis Streams", timeout=120, hint="Read the delivery count from XPENDING; an entry "
       "refused for good, or failing on its --max-deliveries-th delivery, goes to <stream>:dead (XADD with the "
       "order, error-class and original-id) and is acknowledged, both in one MULTI.")  # fmt: skip
def test_streams_dead_letters_after_the_last_delivery(
    open_redis_stream: Callable[[str], RedisStream], started: Processors
) -> None:
    """poison goes to <stream>:dead at once, an order that keeps failing after exactly --max-deliveries tries"""
    stream = open_redis_stream("dead")
    stream.produce(1)
    stuck = next(iter(stream.valid_ids))
    stream.fault("outage", orders=[stuck])
    stream.produce(40, poison=6)
    worker = started.start_streams(stream, "only", claim_after=0.5, max_deliveries=3)
    all_accounted_for(stream, 60, alive_or_fail(worker))
    assert_dead_lettered_once(stream, stream.dead, stuck, "a dead letter has no original-id naming the entry it "
                              "came from (it has {fields})", "--max-deliveries")  # fmt: skip
    assert wait_for(lambda: not stream.pending(), 10), (
        f"{len(stream.pending())} entries are still pending: acknowledge each dead letter once it is written"
    )


# ---------------------------------------------------------------------- SQS


@check(points=5, section="SQS", timeout=195, hint="Delete a message only after its capture; receive with "
       "--visibility as the visibility timeout, so what a dead worker held is back on the queue within seconds; "
       "send the order id as Idempotency-Key.")  # fmt: skip
def test_queue_redelivers_what_a_crashed_worker_held_and_captures_it_once(
    open_queue: Callable[[str], SqsQueue], started: Processors
) -> None:
    """a worker killed mid-queue (10 % of captures failing): what it held comes back and is captured once, soon"""
    queue = open_queue("queue-crash")
    errors = queue.fault("error-rate", errorRate=0.1)
    queue.fault("latency", latencyMs=20)
    queue.produce(300)
    first = started.start_queue_worker(queue, "first", visibility=4, max_receives=6)
    progress_or_fail(queue, first, 80, 60)
    # Slow the captures down to 1.5 s each (no failures now) and crash the worker the moment a
    # message is gone from the queue before its capture, or while it is provably in the middle of a
    # capture: a slow capture was answered 0.2-1.1 s ago, so the worker has taken its next message
    # and waits on its capture (a message waiting out a backoff is in flight too, but it comes back
    # by itself, so it proves nothing). What the worker held must come back soon.
    queue.clear_fault(errors)
    slow = queue.fault("latency", latencyMs=1500)

    def mid_capture() -> bool:
        since = time.time() - queue.last_slow_capture_ended(1.2)
        return 0.2 <= since <= 1.1 and queue.held_uncaptured() >= 1

    wait_for(lambda: queue.deleted_past_uncaptured() or mid_capture(), 15, interval=0.1)
    first.kill()
    queue.clear_fault(slow)
    second = started.start_queue_worker(queue, "second", visibility=4, max_receives=6)
    finished = all_accounted_for(queue, 45, alive_or_fail(second))
    assert_none_lost_or_doubled(queue, finished, " within 45 s of the crash", "deleted before their capture, or "
                                "held by the dead worker for longer than --visibility (4 s)")  # fmt: skip
    # Under load a capture can time out although it happened: its message waits out a backoff (up
    # to 16 s on its 5th receive) before it comes back as a replay and is deleted.
    assert wait_for(lambda: queue.in_queue() == 0, 60), (
        f"messages are still on {queue.queue} 60 s after every order was captured ({queue.counts()}): delete "
        f"each message once it is done; the worker says: {second.tail()}"
    )


@check(points=4, section="SQS", timeout=90, hint="While you work, keep extending the visibility of every message "
       "you hold (the whole batch you received, not only the one at hand), e.g. every --visibility/3 s from a "
       "heartbeat thread (ChangeMessageVisibilityBatch).")  # fmt: skip
def test_queue_keeps_what_it_holds_invisible_while_it_works(
    open_queue: Callable[[str], SqsQueue], started: Processors
) -> None:
    """with slow captures and a second worker waiting, no message is handed to both: each order is tried once"""
    queue = open_queue("queue-slow")
    queue.fault("latency", latencyMs=1200)
    queue.produce(10)
    first = started.start_queue_worker(queue, "first", visibility=3)
    assert wait_for(lambda: queue.counts()["in flight"] > 0 or not first.alive(), 20, interval=0.2), (
        f"queue_worker.py received nothing from {queue.queue} within 20 s: {first.tail()}"
    )
    second = started.start_queue_worker(queue, "second", visibility=3)

    def both_alive() -> None:
        alive_or_fail(first)()
        alive_or_fail(second)()

    finished = all_accounted_for(queue, 45, both_alive)
    tries: dict[str, int] = {}
    for attempt in queue.attempts():
        tries[attempt["order_id"]] = tries.get(attempt["order_id"], 0) + 1
    twice = sorted(order for order, n in tries.items() if n > 1)
    assert not twice, (
        f"{describe(twice)} orders were tried more than once with no failure: their messages became visible "
        "(after --visibility 3 s) while a worker still held them, and the other worker took them too"
    )
    lost, doubled = lost_and_doubled(queue)
    assert finished and not lost, f"{describe(lost)} of 10 slow orders were not captured within 45 s"
    assert not doubled, f"{describe(doubled)} orders were captured twice"


@check(points=4, section="SQS", timeout=120, hint="Give the queue a RedrivePolicy (deadLetterTargetArn of "
       "<queue>-dlq, maxReceiveCount --max-receives): it dead-letters what keeps failing by itself. Send what can "
       "never succeed to the DLQ yourself at once, with an error-class message attribute, then delete it.")  # fmt: skip
def test_queue_dead_letters_after_max_receives(open_queue: Callable[[str], SqsQueue], started: Processors) -> None:
    """poison goes to <queue>-dlq at once; an order that keeps failing after exactly --max-receives tries"""
    queue = open_queue("queue-dead")
    queue.produce(1)
    stuck = next(iter(queue.valid_ids))
    queue.fault("outage", orders=[stuck])
    queue.produce(30, poison=6)
    worker = started.start_queue_worker(queue, "only", visibility=3, max_receives=3, base_delay=0.5)
    all_accounted_for(queue, 60, alive_or_fail(worker))
    policy = queue.redrive_policy()
    assert policy, f"{queue.queue} has no RedrivePolicy: set one naming {queue.dlq} and maxReceiveCount"
    assert str(policy.get("deadLetterTargetArn", "")).endswith(f":{queue.dlq}"), (
        f"the RedrivePolicy of {queue.queue} sends dead letters to {policy.get('deadLetterTargetArn')}, "
        f"not to {queue.dlq}"
    )
    assert str(policy.get("maxReceiveCount")) == "3", (
        f"the RedrivePolicy's maxReceiveCount is {policy.get('maxReceiveCount')}; --max-receives is 3"
    )
    assert_dead_lettered_once(queue, queue.dlq, stuck, f"a message on {queue.dlq} is not an order's body as it "
                              "was sent (keep the body as is)", "--max-receives")  # fmt: skip
    assert wait_for(lambda: queue.in_queue() == 0, 10), (
        f"{queue.in_queue()} messages are still on {queue.queue}: delete each message you dead-letter"
    )
