import pytest

from opslab.shop.faults import FaultType, InvalidFault, effects_on, parse, poison_rate, scoped_ledgers


def test_every_fault_type_has_a_description_and_parses() -> None:
    specs = {
        FaultType.NODE_NOT_READY: {"node": "kwok-node-0"},
        FaultType.SLOW_CONSUMER: {"target": "orders-worker"},
        FaultType.KAFKA_DOWN: {},
        FaultType.REDIS_DOWN: {},
        FaultType.TERRAFORM_DRIFT: {},
        FaultType.POISON_ORDERS: {},
    }
    for kind in FaultType:
        fault = parse("f", {"type": kind.value, **specs.get(kind, {"target": "cart"})})
        assert fault.type is kind


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "meteor"}, "unknown type 'meteor'; known types: latency, error-rate"),
        ({"type": "latency", "target": "database"}, "spec.target 'database' is not a shop service"),
        ({"type": "latency", "target": "cart", "latencyMs": "slow"}, "spec.latencyMs = 'slow' is not a number"),
        ({"type": "error-rate", "target": "cart", "errorRate": 1.5}, r"spec.errorRate = 1.5 is outside 0..1"),
        ({"type": "node-not-ready"}, "node-not-ready needs spec.node"),
        ({"type": "slow-consumer", "target": "cart"}, "slow-consumer applies to orders-worker only"),
        ({"type": "hang", "target": "cart", "hangMs": 0}, r"spec.hangMs = 0.0 is outside 1..600000"),
        ({"type": "hang"}, "spec.target '' is not a shop service"),
        ({"type": "poison-orders", "target": "cart"}, "poison-orders applies to checkout only"),
        ({"type": "poison-orders", "poisonRate": 2}, r"spec.poisonRate = 2.0 is outside 0..1"),
        ({"type": "outage", "target": "cart", "ledger": "run-1"}, "spec.ledger scopes a request fault"),
        ({"type": "crash-loop", "target": "fulfilment", "ledger": "run-1"}, "spec.ledger scopes a request fault"),
        ({"type": "outage", "target": "fulfilment", "ledger": "Run 1"}, "spec.ledger 'Run 1' is not a ledger name"),
    ],
)
def test_bad_specs_name_the_field(spec: dict, message: str) -> None:
    with pytest.raises(InvalidFault, match=message):
        parse("broken", spec)


def test_new_types_have_their_defaults() -> None:
    hang = parse("h", {"type": "hang", "target": "fulfilment"})
    assert (hang.hang_rate, hang.hang_ms) == (0.2, 30_000)
    poison = parse("p", {"type": "poison-orders"})
    assert (poison.target, poison.poison_rate) == ("checkout", 0.1)
    assert parse("p", {"type": "poison-orders", "target": "checkout", "poisonRate": 0.3}).poison_rate == 0.3


def test_a_ledger_scoped_fault_applies_to_that_ledger_only() -> None:
    faults = [
        parse("everyone", {"type": "latency", "target": "fulfilment", "latencyMs": 100}),
        parse("mine", {"type": "error-rate", "target": "fulfilment", "errorRate": 0.5, "ledger": "run-1"}),
        parse("hang", {"type": "hang", "target": "fulfilment", "hangRate": 0.5, "hangMs": 5000, "ledger": "run-1"}),
    ]
    assert scoped_ledgers(faults) == {"run-1"}
    mine, other = effects_on("fulfilment", faults, "run-1"), effects_on("fulfilment", faults, "run-2")
    assert (mine.latency_ms, mine.error_rate, mine.hang_rate, mine.hang_ms) == (100, 0.5, 0.5, 5000)
    assert (other.latency_ms, other.error_rate, other.hang_rate) == (100, 0, 0)
    assert effects_on("fulfilment", faults) == other


def test_an_order_scoped_fault_applies_to_those_orders_only() -> None:
    fault = parse("x", {"type": "outage", "target": "fulfilment", "ledger": "run-1", "orders": ["ord-1", "ord-2"]})
    assert fault.orders == frozenset({"ord-1", "ord-2"})
    assert effects_on("fulfilment", [fault], "run-1", "ord-2").outage
    assert not effects_on("fulfilment", [fault], "run-1", "ord-3").outage
    assert not effects_on("fulfilment", [fault], "run-2", "ord-1").outage
    with pytest.raises(InvalidFault, match=r"spec\.orders scopes"):
        parse("y", {"type": "outage", "target": "payments", "orders": ["ord-1"]})
    with pytest.raises(InvalidFault, match="list of up to 1000"):
        parse("z", {"type": "outage", "target": "fulfilment", "orders": "ord-1"})


def test_poison_shares_combine() -> None:
    faults = [parse(n, {"type": "poison-orders", "poisonRate": 0.5}) for n in ("a", "b")]
    assert poison_rate(faults) == 0.75
    assert poison_rate([]) == 0
