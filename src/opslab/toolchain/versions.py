"""The pinned versions, read from platform/versions.toml (the only place versions are written)."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from opslab.primitives.errors import ConfigError

_SEMVER = re.compile(r"^\d+\.\d+(\.\d+)?$")


@dataclass(frozen=True)
class Shim:
    """A stand-in module assembled at build time from a package of another served module."""

    module: str
    source: str  # module@version whose files are used
    directory: str  # package directory inside the stand-in module


@dataclass(frozen=True)
class ProviderPin:
    """A Terraform provider release and the Go module version it is built from."""

    name: str
    version: str
    module: str  # path@version
    require: tuple[str, ...] = ()
    shim: Shim | None = None
    patches: tuple[str, ...] = ()
    """Unified diffs (paths relative to the repository) applied to the module's source."""
    namespace: str = "hashicorp"
    """The provider's registry namespace: source = "<namespace>/<name>" in required_providers."""


@dataclass(frozen=True)
class Versions:
    """One pinned version per component."""

    kubernetes: str
    etcd: str
    kwok: str
    opentofu: str
    kafka: str
    log4j: str
    slf4j: str
    elasticmq: str
    prometheus: str
    alertmanager: str
    redis: str
    bubblewrap: str
    opa: str = ""
    pushgateway: str = ""
    registry: str = ""
    crane: str = ""
    thanos: str = ""
    thanos_go: str = ""
    """The Go toolchain Thanos is built with (GOTOOLCHAIN=go<this>)."""
    providers: tuple[ProviderPin, ...] = field(default=())
    gitops_go: str = ""
    """The Go toolchain platform/go/gitops is built with (GOTOOLCHAIN=go<this>)."""
    gitops_digest: str = ""
    """A digest of platform/go/gitops's sources: the reconciler's cache version."""
    patch_texts: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    """The text of each patch, so that editing a patch changes the digest and rebuilds."""

    @property
    def providers_digest(self) -> str:
        """A short digest of the provider pins: the cache version of the provider mirror."""
        raw = json.dumps([p.__dict__ | {"shim": p.shim and p.shim.__dict__} for p in self.providers], sort_keys=True)
        patches = sorted({patch for p in self.providers for patch in p.patches})
        raw += "".join(self.patch_texts.get(patch, "") for patch in patches)
        return hashlib.sha256(raw.encode()).hexdigest()[:12]

    def of(self, component: str) -> str:
        """The pinned version of a component, by its name in versions.toml."""
        try:
            return str(getattr(self, component.replace("-", "_")))
        except AttributeError:
            raise KeyError(component) from None


def load_versions(path: Path) -> Versions:
    """Read and check versions.toml; a missing or malformed entry names the key to fix."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing", fix="restore it with `git checkout -- platform/`") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc})", fix="fix the file") from None

    def get(section: str, key: str = "version") -> str:
        value = data.get(section, {}).get(key)
        if not isinstance(value, str) or not _SEMVER.match(value):
            raise ConfigError(
                f"{path}: [{section}] {key} = {value!r} is not a version like 1.2.3",
                fix=f"set [{section}] {key} to a version string",
            )
        return value

    pinned = dict(
        kubernetes=get("kubernetes"),
        etcd=get("etcd"),
        kwok=get("kwok"),
        opentofu=get("opentofu"),
        kafka=get("kafka"),
        log4j=get("kafka", "log4j"),
        slf4j=get("kafka", "slf4j"),
        elasticmq=get("elasticmq"),
        prometheus=get("prometheus"),
        alertmanager=get("alertmanager"),
        redis=get("redis"),
        bubblewrap=get("bubblewrap"),
        opa=get("opa"),
        pushgateway=get("pushgateway"),
        registry=get("registry"),
        crane=get("crane"),
        thanos=get("thanos"),
        thanos_go=get("thanos", "go"),
    )

    providers = []
    for name, entry in sorted(data.get("terraform-providers", {}).items()):
        module = entry.get("module", "")
        if "@" not in module:
            raise ConfigError(
                f"{path}: [terraform-providers.{name}] module = {module!r} is not path@version",
                fix="give the Go module and its version, e.g. github.com/x/y@v1.2.3",
            )
        shim = entry.get("shim")
        providers.append(
            ProviderPin(
                name=name,
                version=_provider_version(path, name, entry),
                module=module,
                require=tuple(entry.get("require", ())),
                shim=Shim(shim["module"], shim["from"], shim["dir"]) if shim else None,
                patches=tuple(entry.get("patches", ())),
                namespace=str(entry.get("namespace", "hashicorp")),
            )
        )

    root = path.parent.parent
    patch_texts = {}
    for pin in providers:
        for patch in pin.patches:
            try:
                patch_texts[patch] = (root / patch).read_text()
            except OSError:
                raise ConfigError(
                    f"{path}: [terraform-providers.{pin.name}] patch {patch} cannot be read",
                    fix="restore it with `git checkout -- platform/`",
                ) from None

    return Versions(
        **pinned,
        providers=tuple(providers),
        gitops_go=get("gitops", "go"),
        gitops_digest=source_digest(root / "platform" / "go" / "gitops"),
        patch_texts=patch_texts,
    )


SOURCE_FILES = ("go.mod", "go.sum", "*.go")


def source_digest(directory: Path) -> str:
    """A short digest of a Go module of opslab's own (go.mod, go.sum, its .go files), or "missing"
    when the directory is; the component's cache version, so an edited source is rebuilt."""
    files = sorted({f for pattern in SOURCE_FILES for f in directory.glob(pattern) if f.is_file()})
    if not files:
        return "missing"
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _provider_version(path: Path, name: str, entry: dict[str, object]) -> str:
    value = entry.get("version")
    if not isinstance(value, str) or not _SEMVER.match(value):
        raise ConfigError(
            f"{path}: [terraform-providers.{name}] version = {value!r} is not a version like 1.2.3",
            fix="set it to the provider release the module builds",
        )
    return value


_VERSION_IN_TEXT = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The first dotted version number in a program's --version output, e.g. (1, 36, 3)."""
    match = _VERSION_IN_TEXT.search(text)
    if not match:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def version_matches(found: tuple[int, int, int] | None, pinned: str, *, minimum: bool = False) -> bool:
    """Whether a found version satisfies the pin.

    A pin of "1.36.3" needs exactly 1.36.3; a pin of "2.42" accepts any 2.42.x; with ``minimum``
    any version at or above the pin is accepted (used for terraform >= 1.6).
    """
    if found is None:
        return False
    parts = tuple(int(p) for p in pinned.split("."))
    if minimum:
        return found[: len(parts)] >= parts
    return found[: len(parts)] == parts
