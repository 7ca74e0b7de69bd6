from opslab.runtime.nodes import TAINT_KEY, manifest, plan
from opslab.settings import Cluster


def test_three_nodes_over_three_zones_with_the_last_tainted() -> None:
    specs = plan(Cluster(nodes=3))
    assert [(s.name, s.zone, s.tainted) for s in specs] == [
        ("kwok-node-0", "zone-a", False),
        ("kwok-node-1", "zone-b", False),
        ("kwok-node-2", "zone-c", True),
    ]


def test_a_single_node_is_never_tainted() -> None:
    assert [s.tainted for s in plan(Cluster(nodes=1))] == [False]


def test_many_nodes_spread_round_robin() -> None:
    zones = [s.zone for s in plan(Cluster(nodes=100))]
    assert {z: zones.count(z) for z in set(zones)} == {"zone-a": 34, "zone-b": 33, "zone-c": 33}


def test_manifest_marks_the_node_for_kwok() -> None:
    node = manifest(plan(Cluster(nodes=3))[2])
    assert node.metadata.annotations["kwok.x-k8s.io/node"] == "fake"
    assert node.metadata.labels["topology.kubernetes.io/zone"] == "zone-c"
    assert node.spec.taints[0].key == TAINT_KEY
