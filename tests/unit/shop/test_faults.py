import pytest

from opslab.shop.faults import FaultType, InvalidFault, parse


def test_every_fault_type_has_a_description_and_parses() -> None:
    specs = {
        FaultType.NODE_NOT_READY: {"node": "kwok-node-0"},
        FaultType.SLOW_CONSUMER: {"target": "orders-worker"},
        FaultType.KAFKA_DOWN: {},
        FaultType.REDIS_DOWN: {},
        FaultType.TERRAFORM_DRIFT: {},
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
    ],
)
def test_bad_specs_name_the_field(spec: dict, message: str) -> None:
    with pytest.raises(InvalidFault, match=message):
        parse("broken", spec)
