import itertools

from opslab.shop.ledger import MAX_ENTRIES, LedgerBook, Outcome


def book(max_entries: int = MAX_ENTRIES, times: list[float] | None = None) -> LedgerBook:
    clock = iter(times or itertools.count(1000.0))
    prefixes = (f"p{n}" for n in itertools.count())
    return LedgerBook(max_entries, clock=lambda: next(clock), prefixes=lambda: next(prefixes))


def capture(ledgers: LedgerBook, order: str, *, ledger: str = "default", key: str | None = None, amount: int = 100):
    return ledgers.capture(ledger, order, amount, key=key, fingerprint=(order, amount))


def test_every_capture_without_a_key_is_recorded_and_repeats_show_as_duplicates() -> None:
    ledgers = book()
    for order in ("ord-a", "ord-b", "ord-a", "ord-c", "ord-a", "ord-b"):
        capture(ledgers, order)
    summary = ledgers.ledgers["default"].summary()
    assert summary == {
        "ledger": "default",
        "captures": 6,
        "orders": 3,
        "duplicated_orders": 2,
        "duplicate_captures": 3,
        "amount_cents": 600,
        "duplicated_order_ids": ["ord-a", "ord-b"],
        "duplicated_order_ids_complete": True,
    }


def test_a_key_replays_its_first_capture_and_refuses_another_order() -> None:
    ledgers = book()
    first = capture(ledgers, "ord-a", key="k1")
    again = capture(ledgers, "ord-a", key="k1")
    other = capture(ledgers, "ord-b", key="k1")
    assert (first.outcome, again.outcome, other.outcome) == (Outcome.RECORDED, Outcome.REPLAYED, Outcome.KEY_REUSED)
    assert again.capture == first.capture and other.capture == first.capture
    assert len(ledgers.ledgers["default"]) == 1
    assert capture(ledgers, "ord-a", key="k1", amount=5).outcome is Outcome.KEY_REUSED


def test_ledgers_are_separate_namespaces() -> None:
    ledgers = book()
    capture(ledgers, "ord-a", ledger="run-1", key="k")
    assert capture(ledgers, "ord-a", ledger="run-2", key="k").outcome is Outcome.RECORDED
    capture(ledgers, "ord-a", ledger="run-2")
    assert ledgers.ledgers["run-1"].summary()["duplicated_orders"] == 0
    assert ledgers.ledgers["run-2"].summary()["duplicated_orders"] == 1
    assert ledgers.drop("run-2") == 2
    assert ledgers.drop("run-2") == 0
    assert set(ledgers.ledgers) == {"run-1"} and ledgers.entries == 1


def test_the_book_is_bounded_and_refuses_rather_than_forgets() -> None:
    ledgers = book(max_entries=3)
    for order in ("ord-a", "ord-b"):
        capture(ledgers, order, ledger="x")
    capture(ledgers, "ord-c", ledger="y", key="k")
    full = capture(ledgers, "ord-d", ledger="y")
    assert full.outcome is Outcome.FULL and full.capture is None
    assert capture(ledgers, "ord-c", ledger="y", key="k").outcome is Outcome.REPLAYED, "replays need no room"
    assert ledgers.entries == 3 and len(ledgers.ledgers["x"]) == 2
    ledgers.drop("x")
    assert capture(ledgers, "ord-d", ledger="y").outcome is Outcome.RECORDED


def test_capture_ids_are_unique_even_after_a_ledger_is_deleted() -> None:
    ledgers = book()
    first = capture(ledgers, "ord-a").capture
    ledgers.drop("default")
    second = capture(ledgers, "ord-a").capture
    assert first is not None and second is not None
    assert first.seq == second.seq == 1
    assert first.capture_id != second.capture_id


def test_select_filters_by_order_time_and_position_and_pages() -> None:
    ledgers = book(times=[10.0, 20.0, 15.0, 30.0, 40.0])  # the clock steps back once
    for order in ("ord-a", "ord-b", "ord-a", "ord-c", "ord-a"):
        capture(ledgers, order)
    ledger = ledgers.ledgers["default"]
    assert [c.captured_at for c in ledger.captures] == [10.0, 20.0, 20.0, 30.0, 40.0], "never decreasing"
    assert [c.seq for c in ledger.select(order="ord-a", since=None, after=0, limit=10)[0]] == [1, 3, 5]
    assert [c.seq for c in ledger.select(order="ord-a", since=None, after=1, limit=1)[0]] == [3]
    assert [c.seq for c in ledger.select(order=None, since=20.0, after=0, limit=10)[0]] == [2, 3, 4, 5]
    page, more = ledger.select(order=None, since=None, after=0, limit=2)
    assert [c.seq for c in page] == [1, 2] and more
    page, more = ledger.select(order=None, since=None, after=4, limit=2)
    assert [c.seq for c in page] == [5] and not more
    assert ledger.select(order="ord-zzz", since=None, after=0, limit=2) == ([], False)
