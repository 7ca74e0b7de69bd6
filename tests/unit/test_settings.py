from pathlib import Path

import pytest

from opslab.primitives.errors import ConfigError
from opslab.settings import Ports, load

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    settings = load(environ={}, root=ROOT)
    assert settings.cluster.nodes == 3
    assert settings.ports.apiserver == 16443
    assert settings.paths.state == ROOT / ".opslab"
    assert settings.paths.kubeconfig == ROOT / ".opslab" / "kubeconfig"


def test_layers_env_over_file_over_defaults_and_flags_over_all(tmp_path: Path) -> None:
    (tmp_path / "platform").mkdir()
    (tmp_path / "platform" / "versions.toml").write_text("")
    (tmp_path / "opslab.toml").write_text("[cluster]\nnodes = 5\n[ports]\nredis = 20000\n")
    from_file = load(environ={}, root=tmp_path)
    assert (from_file.cluster.nodes, from_file.ports.redis) == (5, 20000)
    from_env = load(environ={"OPSLAB_NODES": "7", "OPSLAB_PORT_REDIS": "20001"}, root=tmp_path)
    assert (from_env.cluster.nodes, from_env.ports.redis) == (7, 20001)
    from_flags = load({"nodes": "9", "port_redis": 20002}, environ={"OPSLAB_NODES": "7"}, root=tmp_path)
    assert (from_flags.cluster.nodes, from_flags.ports.redis) == (9, 20002)


@pytest.mark.parametrize(
    ("flags", "environ", "message"),
    [
        ({"nodes": "zero"}, {}, r"--nodes='zero' is not a number of nodes"),
        ({"nodes": "0"}, {}, r"--nodes=0 is out of range"),
        ({"nodes": "501"}, {}, r"--nodes=501 is out of range"),
        ({}, {"OPSLAB_NODES": "-2"}, r"OPSLAB_NODES=-2 is out of range"),
        ({}, {"OPSLAB_PORT_REDIS": "http"}, r"OPSLAB_PORT_REDIS='http' is not a port number"),
        ({}, {"OPSLAB_PORT_REDIS": "80"}, r"OPSLAB_PORT_REDIS=80 is out of range"),
        ({}, {"OPSLAB_PORT_REDIS": "16443"}, r"ports apiserver and redis are both set to 16443"),
    ],
)
def test_bad_values_name_their_source(flags: dict, environ: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(flags, environ=environ, root=ROOT)


def test_unknown_file_entries_are_refused(tmp_path: Path) -> None:
    (tmp_path / "platform").mkdir()
    (tmp_path / "platform" / "versions.toml").write_text("")
    (tmp_path / "opslab.toml").write_text("[ports]\nredsi = 1\n")
    with pytest.raises(ConfigError, match="unknown key 'redsi' in \\[ports\\]"):
        load(environ={}, root=tmp_path)
    (tmp_path / "opslab.toml").write_text("[cluster]\nnodess = 4\n")
    with pytest.raises(ConfigError, match="unknown key 'nodess' in \\[cluster\\]; use nodes"):
        load(environ={}, root=tmp_path)
    (tmp_path / "opslab.toml").write_text("ports = 5\n")
    with pytest.raises(ConfigError, match="ports must be a \\[ports\\] table"):
        load(environ={}, root=tmp_path)
    (tmp_path / "opslab.toml").write_text("[cluster\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(environ={}, root=tmp_path)


def test_shifted_port_sets_never_collide() -> None:
    """Tests shift every port by 1000, 2000 and 2500 (the incident world), the benchmark by 3000: all
    can run beside a platform."""
    ports = [port for _, port in load(environ={}, root=ROOT).ports.items()]
    shifted = [port + offset for offset in (0, 1000, 2000, 2500, 3000) for port in ports]
    assert len(shifted) == len(set(shifted))
    assert max(shifted) <= 65535


def test_the_platforms_that_run_side_by_side_never_share_a_port() -> None:
    """The learner's platform (offset 0), the test session's (1000), the lifecycle tests' small one
    (2000), the incident world (2500) and the benchmarks' (3000) run at once; a new default port must
    not land on another's."""
    base = [port for _, port in Ports().items()]
    taken: dict[int, int] = {}
    for offset in (0, 1000, 2000, 2500, 3000):
        for port in base:
            assert port + offset not in taken, (
                f"port {port + offset} is used at offsets {taken.get(port + offset)} and {offset}"
            )
            taken[port + offset] = offset


def test_the_poison_order_rate_layers_and_is_checked(tmp_path: Path) -> None:
    (tmp_path / "platform").mkdir()
    (tmp_path / "platform" / "versions.toml").write_text("")
    assert load(environ={}, root=tmp_path).shop.poison_order_rate == 0
    (tmp_path / "opslab.toml").write_text("[shop]\npoison_order_rate = 0.05\n")
    assert load(environ={}, root=tmp_path).shop.poison_order_rate == 0.05
    from_env = load(environ={"OPSLAB_SHOP_POISON_ORDER_RATE": "0.2"}, root=tmp_path)
    assert from_env.shop.poison_order_rate == 0.2
    with pytest.raises(ConfigError, match=r"OPSLAB_SHOP_POISON_ORDER_RATE=1\.5 is out of range"):
        load(environ={"OPSLAB_SHOP_POISON_ORDER_RATE": "1.5"}, root=tmp_path)
    (tmp_path / "opslab.toml").write_text("[shop]\npoison_order_rate = 'some'\n")
    with pytest.raises(ConfigError, match=r"shop\.poison_order_rate='some' is not a number"):
        load(environ={}, root=tmp_path)
