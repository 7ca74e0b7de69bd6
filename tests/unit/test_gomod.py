from pathlib import Path

import pytest

from opslab.toolchain import gomod
from opslab.toolchain.versions import load_versions

ROOT = Path(__file__).resolve().parents[2]

UPSTREAM = """\
module k8s.io/kubernetes

go 1.26.0

require (
	k8s.io/api v0.0.0
	k8s.io/client-go v0.0.0
	github.com/spf13/cobra v1.10.0
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	github.com/example/forked => github.com/example/fork v1.0.0
)

replace k8s.io/kubectl => ./staging/src/k8s.io/kubectl
"""


def test_staging_modules_come_from_the_upstream_replace_directives() -> None:
    assert gomod.staging_modules(UPSTREAM) == ["k8s.io/api", "k8s.io/client-go", "k8s.io/kubectl"]


def test_staging_version_maps_1_n_p_to_0_n_p() -> None:
    assert gomod.staging_version("1.36.3") == "v0.36.3"
    with pytest.raises(ValueError, match=r"expected 1\.N\.P"):
        gomod.staging_version("2.0.0")


def test_kubernetes_module_replaces_every_staging_module_with_its_release() -> None:
    module = gomod.module_for(
        "kubernetes", "k8s.io/kubernetes", "1.36.3", ("k8s.io/kubernetes/cmd/kubectl",), UPSTREAM
    )
    text = module.render()
    assert "go 1.26.0" in text
    assert "\tk8s.io/kubernetes v1.36.3" in text
    assert "\tk8s.io/api => k8s.io/api v0.36.3" in text
    assert "\tk8s.io/kubectl => k8s.io/kubectl v0.36.3" in text
    assert "github.com/example" not in text
    assert "\tk8s.io/kubernetes/cmd/kubectl" in text


def test_other_modules_get_no_replaces() -> None:
    module = gomod.module_for(
        "etcd", "go.etcd.io/etcd/server/v3", "3.6.16", ("go.etcd.io/etcd/server/v3",), UPSTREAM
    )
    assert module.replace == ()
    assert gomod.required_version(module.render(), "go.etcd.io/etcd/server/v3") == "v3.6.16"


def test_committed_kubernetes_module_matches_the_pin() -> None:
    """platform/go/kubernetes/go.mod was generated for the version in versions.toml."""
    versions = load_versions(ROOT / "platform" / "versions.toml")
    text = (ROOT / "platform" / "go" / "kubernetes" / "go.mod").read_text()
    assert text.startswith(gomod.HEADER)
    assert gomod.required_version(text, "k8s.io/kubernetes") == f"v{versions.kubernetes}"
    staged = gomod.staging_version(versions.kubernetes)
    replaces = [line for line in text.splitlines() if "=>" in line]
    assert len(replaces) >= 25
    assert all(line.strip().endswith(staged) for line in replaces)
