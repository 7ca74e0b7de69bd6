import os
from pathlib import Path

import pytest

from opslab.primitives.errors import ConfigError, ToolchainError
from opslab.toolchain.cache import CacheEntry
from opslab.toolchain.catalog import Tool
from opslab.toolchain.resolve import Toolchain, terraform_cli
from opslab.toolchain.versions import load_versions

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = load_versions(ROOT / "platform" / "versions.toml")
KUBE = tuple(int(p) for p in VERSIONS.kubernetes.split("."))


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def cached(tmp_path: Path, component: str, version: str, tool: str) -> Path:
    entry = CacheEntry(tmp_path / "cache", component, version)
    stage = entry.begin()
    executable(stage / "bin" / tool)
    entry.commit(1.0)
    return entry.bin / tool


def make(tmp_path: Path, *, environ=None, which=None, versions=None) -> Toolchain:  # type: ignore[no-untyped-def]
    found = versions or {}
    return Toolchain(
        VERSIONS,
        tmp_path / "cache",
        environ=environ or {},
        which=which or (lambda name: None),
        probe_version=lambda path, tool: found.get(str(path), KUBE),
    )


def test_env_override_wins_over_path_and_cache(tmp_path: Path) -> None:
    override = executable(tmp_path / "custom" / "kube-apiserver")
    cached(tmp_path, "kubernetes", VERSIONS.kubernetes, "kube-apiserver")
    tc = make(tmp_path, environ={"OPSLAB_BIN_KUBE_APISERVER": str(override)}, which=lambda n: "/usr/bin/" + n)
    resolved = tc.resolve("kube-apiserver")
    assert resolved is not None and (resolved.source, resolved.path) == ("env", override)


def test_path_is_used_only_with_the_right_version(tmp_path: Path) -> None:
    on_path = executable(tmp_path / "usr" / "kube-apiserver")
    cache_copy = cached(tmp_path, "kubernetes", VERSIONS.kubernetes, "kube-apiserver")
    right = make(tmp_path, which=lambda n: str(on_path))
    assert right.resolve("kube-apiserver").source == "path"  # type: ignore[union-attr]
    wrong = make(tmp_path, which=lambda n: str(on_path), versions={str(on_path): (1, 30, 0)})
    resolved = wrong.resolve("kube-apiserver")
    assert resolved is not None and (resolved.source, resolved.path) == ("cache", cache_copy)


def test_nothing_found_means_build(tmp_path: Path) -> None:
    tc = make(tmp_path)
    assert tc.resolve("etcd") is None
    with pytest.raises(ToolchainError, match=r"etcd is not built yet; run `make up`"):
        tc.require("etcd")


def test_a_corrupt_cache_entry_is_not_used(tmp_path: Path) -> None:
    binary = cached(tmp_path, "etcd", VERSIONS.etcd, "etcd")
    tc = make(tmp_path)
    assert tc.resolve("etcd") is not None
    binary.write_text("truncated")
    assert tc.resolve("etcd") is None
    entry = CacheEntry(tmp_path / "cache", "etcd", VERSIONS.etcd)
    assert entry.problem() == "corrupt: bin/etcd has the wrong size"


def test_checksum_catches_same_size_corruption(tmp_path: Path) -> None:
    binary = cached(tmp_path, "etcd", VERSIONS.etcd, "etcd")
    binary.write_text("#!/bin/zz\n")
    entry = CacheEntry(tmp_path / "cache", "etcd", VERSIONS.etcd)
    assert entry.problem() is None
    assert entry.problem(deep=True) == "corrupt: bin/etcd does not match its checksum"


def test_an_interrupted_build_never_looks_finished(tmp_path: Path) -> None:
    entry = CacheEntry(tmp_path / "cache", "etcd", VERSIONS.etcd)
    executable(entry.begin() / "bin" / "etcd")
    assert entry.problem() == "not built"
    assert make(tmp_path).resolve("etcd") is None


def test_bad_override_is_a_config_error(tmp_path: Path) -> None:
    tc = make(tmp_path, environ={"OPSLAB_BIN_ETCD": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match=r"OPSLAB_BIN_ETCD=.* is not an executable file"):
        tc.resolve("etcd")
    wrong = executable(tmp_path / "etcd")
    tc = make(tmp_path, environ={"OPSLAB_BIN_ETCD": str(wrong)}, versions={str(wrong): (3, 4, 23)})
    with pytest.raises(ConfigError, match=r"is version 3.4.23, opslab pins 3.6.16"):
        tc.resolve("etcd")


def test_unknown_tool_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown tool 'kubelet'; use one of: .*kube-apiserver"):
        make(tmp_path).resolve("kubelet")


def test_terraform_from_path_needs_1_6(tmp_path: Path) -> None:
    terraform = executable(tmp_path / "bin" / "terraform")
    tofu = cached(tmp_path, "opentofu", VERSIONS.opentofu, "tofu")
    new = make(
        tmp_path,
        which=lambda n: str(terraform) if n == "terraform" else None,
        versions={str(terraform): (1, 9, 0)},
    )
    assert terraform_cli(new) == terraform
    old = make(
        tmp_path,
        which=lambda n: str(terraform) if n == "terraform" else None,
        versions={str(terraform): (1, 5, 7)},
    )
    assert terraform_cli(old) == tofu


def test_tool_env_var_names() -> None:
    assert Tool("kube-apiserver").env_var == "OPSLAB_BIN_KUBE_APISERVER"


def test_old_builds_of_an_own_module_are_pruned_but_the_newest_kept(tmp_path: Path) -> None:
    for age, version in enumerate(["v5", "v4", "v3", "v2", "v1"]):
        cached(tmp_path, "gitops", version, "opslab-gitops")
        manifest = tmp_path / "cache" / "gitops" / version / "manifest.json"
        os.utime(manifest, (1_000_000 - age, 1_000_000 - age))
    (tmp_path / "cache" / "gitops" / "v0.partial").mkdir()  # another checkout's build in progress
    current = CacheEntry(tmp_path / "cache", "gitops", "v6")
    executable(current.begin() / "bin" / "opslab-gitops")
    current.commit(1.0)
    removed = current.prune_siblings(keep=2)
    left = sorted(p.name for p in (tmp_path / "cache" / "gitops").iterdir())
    assert left == ["v0.partial", "v4", "v5", "v6"], left
    assert sorted(p.name for p in removed) == ["v1", "v2", "v3"]
