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
    module = gomod.module_for("kubernetes", "k8s.io/kubernetes", "1.36.3", ("k8s.io/kubernetes/cmd/kubectl",), UPSTREAM)
    text = module.render()
    assert "go 1.26.0" in text
    assert "\tk8s.io/kubernetes v1.36.3" in text
    assert "\tk8s.io/api => k8s.io/api v0.36.3" in text
    assert "\tk8s.io/kubectl => k8s.io/kubectl v0.36.3" in text
    assert "github.com/example" not in text
    assert "\tk8s.io/kubernetes/cmd/kubectl" in text


OPENTOFU_LIKE = """module github.com/opentofu/opentofu

go 1.24.0

replace (
\tgo.etcd.io/etcd/api/v3 => ../api
\tgithub.com/hashicorp/hcl/v2 v2.20.1 => github.com/opentofu/hcl/v2 v2.20.2-0.2025
)

replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY
"""


def test_other_modules_repeat_only_upstreams_remote_replaces() -> None:
    module = gomod.module_for(
        "opentofu",
        "github.com/opentofu/opentofu",
        "1.10.10",
        ("github.com/opentofu/opentofu/cmd/tofu",),
        OPENTOFU_LIKE,
    )
    assert module.replace == (("github.com/hashicorp/hcl/v2 v2.20.1", "github.com/opentofu/hcl/v2", "v2.20.2-0.2025"),)
    text = module.render()
    assert "\tgithub.com/hashicorp/hcl/v2 v2.20.1 => github.com/opentofu/hcl/v2 v2.20.2-0.2025" in text
    assert "FORBIDDEN" not in text and "../api" not in text
    assert gomod.required_version(text, "github.com/opentofu/opentofu") == "v1.10.10"


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
