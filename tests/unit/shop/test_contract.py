import json
import random
from collections.abc import Callable
from typing import Any

import pytest

from opslab.shop import contract, poison
from opslab.shop.contract import Order, Reason, Violation
from tests.unit.shop.fakes import order


def test_an_order_from_checkout_keeps_the_contract() -> None:
    event = contract.new_order("ord-00000000002a", "ada", {"sku-001": 1, "sku-003": 2}, 1.0)
    assert event["amount_cents"] == 100 + 2 * 114
    checked = contract.parse(json.dumps(event).encode())
    assert checked == Order("ord-00000000002a", 328, (("sku-001", 1), ("sku-003", 2)))


def test_the_fingerprint_ignores_who_and_when() -> None:
    first = contract.check({**order(1), "user": "ada", "ts": 1.0})
    second = contract.check({**order(1), "user": "bob", "ts": 2.0, "ledger": "x"})
    assert isinstance(first, Order) and isinstance(second, Order)
    assert first.fingerprint == second.fingerprint


@pytest.mark.parametrize(
    ("change", "reason", "status", "message"),
    [
        (lambda o: [1, 2], Reason.NOT_AN_OBJECT, 400, "must be a JSON object, not list"),
        (lambda o: {k: v for k, v in o.items() if k != "amount_cents"}, Reason.MISSING_FIELD, 422, "no amount_cents"),
        (lambda o: {"user": "ada"}, Reason.MISSING_FIELD, 422, "no order_id, amount_cents, items"),
        (lambda o: {**o, "order_id": "ORDER-1"}, Reason.BAD_ORDER_ID, 422, "'ORDER-1' is not 'ord-' followed by"),
        (lambda o: {**o, "order_id": 42}, Reason.BAD_ORDER_ID, 422, "order_id 42"),
        (lambda o: {**o, "amount_cents": -228}, Reason.BAD_AMOUNT, 422, "amount_cents -228 is not a whole number"),
        (lambda o: {**o, "amount_cents": 2.5}, Reason.BAD_AMOUNT, 422, "2.5"),
        (lambda o: {**o, "amount_cents": True}, Reason.BAD_AMOUNT, 422, "True"),
        (lambda o: {**o, "items": {}}, Reason.BAD_ITEMS, 422, "non-empty object"),
        (lambda o: {**o, "items": {"sku-003": 0}}, Reason.BAD_ITEMS, 422, "quantity of sku-003 is 0"),
        (lambda o: {**o, "items": {"sku-999": 1}}, Reason.UNKNOWN_PRODUCT, 422, "unknown product 'sku-999'"),
        (lambda o: {**o, "amount_cents": 1}, Reason.AMOUNT_MISMATCH, 422, "does not match the items"),
    ],
)
def test_a_broken_order_is_named_with_its_reason(
    change: Callable[[dict[str, Any]], object], reason: Reason, status: int, message: str
) -> None:
    checked = contract.parse(json.dumps(change(order(7))).encode())
    assert isinstance(checked, Violation)
    assert (checked.reason, checked.status) == (reason, status)
    assert message in checked.message


def test_text_that_is_not_json_is_malformed() -> None:
    for raw in (b"", b"{", b"\xff\xfe", None):
        checked = contract.parse(raw)
        assert isinstance(checked, Violation) and checked.reason is Reason.NOT_JSON and checked.status == 400


@pytest.mark.parametrize("kind", list(poison.PoisonKind))
def test_every_kind_of_poison_breaks_the_contract_as_documented(kind: poison.PoisonKind) -> None:
    rng = random.Random(3)
    for number in range(50):
        checked = contract.parse(poison.poisoned(order(number, {"sku-001": 1, "sku-040": 3}), kind, rng))
        assert isinstance(checked, Violation), f"{kind} left a valid order"
        assert checked.reason is poison.BREAKS[kind]


def test_poison_is_reproducible_and_uses_every_kind() -> None:
    def events(seed: int) -> list[bytes]:
        rng = random.Random(seed)
        return [poison.poisoned(order(n), poison.choose(rng), rng) for n in range(100)]

    assert events(5) == events(5)
    kinds = {poison.choose(random.Random(seed)) for seed in range(100)}
    assert kinds == set(poison.PoisonKind)
