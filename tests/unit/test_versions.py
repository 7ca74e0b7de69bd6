import shutil
from pathlib import Path

import pytest

from opslab.primitives.errors import ConfigError
from opslab.toolchain.versions import load_versions, parse_version, source_digest, version_matches

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Kubernetes v1.36.3", (1, 36, 3)),
        ("etcd Version: 3.6.16\nGit SHA: abc\nGo Version: go1.26.8", (3, 6, 16)),
        ("prometheus, version 2.42.0+ds (branch: debian/sid)", (2, 42, 0)),
        ("Redis server v=7.0.15 sha=00000000:0", (7, 0, 15)),
        ("OpenTofu v1.10.10\non linux_amd64", (1, 10, 10)),
        ("Client Version: v1.36.3\nKustomize Version: v5.7.1", (1, 36, 3)),
        ("Terraform v1.6", (1, 6, 0)),
        ("no version here", None),
    ],
)
def test_parse_version_reads_the_first_version(text: str, expected: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == expected


def test_exact_pin_needs_the_same_patch() -> None:
    assert version_matches((1, 36, 3), "1.36.3")
    assert not version_matches((1, 36, 2), "1.36.3")
    assert not version_matches((1, 35, 3), "1.36.3")


def test_minor_pin_accepts_any_patch() -> None:
    assert version_matches((2, 42, 0), "2.42")
    assert version_matches((2, 42, 9), "2.42")
    assert not version_matches((2, 43, 0), "2.42")


def test_minimum_pin_accepts_newer() -> None:
    assert version_matches((1, 6, 0), "1.6", minimum=True)
    assert version_matches((1, 13, 3), "1.6", minimum=True)
    assert not version_matches((1, 5, 7), "1.6", minimum=True)
    assert not version_matches(None, "1.6", minimum=True)


def test_the_repository_pins_parse() -> None:
    versions = load_versions(ROOT / "platform" / "versions.toml")
    assert versions.kubernetes.startswith("1.36.")
    assert versions.of("etcd").startswith("3.6.")


def test_a_bad_pin_names_the_key(tmp_path: Path) -> None:
    text = (ROOT / "platform" / "versions.toml").read_text().replace('version = "3.6.16"', 'version = "latest"')
    bad = tmp_path / "versions.toml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=r"\[etcd\] version = 'latest'"):
        load_versions(bad)


def test_a_missing_file_says_how_to_restore_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="git checkout"):
        load_versions(tmp_path / "versions.toml")


def test_provider_pins_need_their_patch_files(tmp_path: Path) -> None:
    (tmp_path / "platform").mkdir()
    pins = tmp_path / "platform" / "versions.toml"
    pins.write_text((ROOT / "platform" / "versions.toml").read_text())
    with pytest.raises(ConfigError, match=r"\[terraform-providers.kubernetes\] patch .* cannot be read"):
        load_versions(pins)


def test_provider_digest_follows_the_patch_text(tmp_path: Path) -> None:
    original = load_versions(ROOT / "platform" / "versions.toml")
    (tmp_path / "platform").mkdir()
    pins = tmp_path / "platform" / "versions.toml"
    pins.write_text((ROOT / "platform" / "versions.toml").read_text())
    for pin in original.providers:
        for patch in pin.patches:
            target = tmp_path / patch
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text((ROOT / patch).read_text() + "\n# edited\n")
    assert load_versions(pins).providers_digest != original.providers_digest


def test_the_gitops_reconcilers_cache_version_follows_its_sources(tmp_path: Path) -> None:
    """Its cache version is a digest of platform/go/gitops: an edited .go file or go.sum rebuilds it;
    a file that is not source (a README) does not."""
    module = tmp_path / "gitops"
    shutil.copytree(ROOT / "platform" / "go" / "gitops", module)
    first = source_digest(module)
    assert first == load_versions(ROOT / "platform" / "versions.toml").gitops_digest
    (module / "NOTES.md").write_text("not source\n")
    assert source_digest(module) == first
    (module / "main.go").write_text((module / "main.go").read_text() + "\n// edited\n")
    edited = source_digest(module)
    assert edited != first
    (module / "go.sum").write_text((module / "go.sum").read_text() + "\n")
    assert source_digest(module) not in (first, edited)
    assert source_digest(tmp_path / "none") == "missing"
