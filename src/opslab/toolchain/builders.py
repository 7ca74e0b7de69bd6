"""Building or fetching one component into a staging directory of the cache.

Each builder takes a Component and a BuildContext and fills ``ctx.stage`` (which becomes
~/.cache/opslab/<component>/<version>/) with ``bin/`` and whatever the binaries need. Output of the
underlying tools goes to ``ctx.log``; progress goes to ``ctx.progress`` as short phrases.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from opslab.primitives.errors import PrerequisiteMissing, ToolchainError
from opslab.primitives.files import write_atomic
from opslab.primitives.processes import kill_group, run
from opslab.toolchain import gomod
from opslab.toolchain.catalog import Component, Source
from opslab.toolchain.versions import Versions, parse_version

Progress = Callable[[str], None]

_MACHINE = platform.machine()
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(_MACHINE, _MACHINE)
"""This machine's architecture as Go and Terraform name it (the provider mirror's linux_<arch>)."""
DEBIAN_MULTIARCH = {"aarch64": "aarch64-linux-gnu", "arm64": "aarch64-linux-gnu"}.get(_MACHINE, "x86_64-linux-gnu")
"""Where Debian puts this architecture's shared libraries (/usr/lib/<triplet>)."""


@dataclass
class BuildContext:
    """Everything a builder may touch."""

    root: Path
    """The opslab checkout (platform/go/<component>/, platform/java/<component>/)."""
    stage: Path
    """The empty directory to fill."""
    log: Path
    """Where the build tools' output is appended."""
    versions: Versions
    progress: Progress
    timeout: float = 3600


def stream(
    args: list[str],
    ctx: BuildContext,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    what: str,
) -> None:
    """Run a long build command, logging its output and reporting lines, within ``ctx.timeout``."""
    ctx.log.parent.mkdir(parents=True, exist_ok=True)
    with ctx.log.open("a") as log:
        log.write(f"\n$ {' '.join(args)}\n")
        log.flush()
        try:
            proc = subprocess.Popen(
                args,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise PrerequisiteMissing(f"program {args[0]!r} was not found") from None
        assert proc.stdout is not None
        # A silent hang (a stalled download) prints nothing: a timer, not the output, enforces the limit.
        watchdog = threading.Timer(ctx.timeout, kill_group, args=(proc.pid,))
        watchdog.start()
        began = time.monotonic()
        try:
            for line in proc.stdout:
                log.write(line)
                if on_line:
                    on_line(line.rstrip("\n"))
            code = proc.wait()
        except BaseException:
            kill_group(proc.pid)
            proc.wait()
            raise
        finally:
            watchdog.cancel()
            proc.stdout.close()
        if time.monotonic() - began >= ctx.timeout:
            raise ToolchainError(f"{what} took longer than {ctx.timeout:.0f}s and was stopped", fix=f"see {ctx.log}")
    if code != 0:
        tail = _tail(ctx.log)
        raise ToolchainError(f"{what} failed (exit {code}): {tail}", fix=f"see {ctx.log}")


def _tail(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return " | ".join(lines[-3:])[:400]


# --------------------------------------------------------------------------- prerequisites


MINIMUM_GO = "1.21"
"""The oldest local Go that can fetch a pinned toolchain (GOTOOLCHAIN) as a module."""


def check_go(required: str) -> str:
    """The local Go version, or PrerequisiteMissing if Go is absent or older than ``required``."""
    if shutil.which("go") is None:
        raise PrerequisiteMissing("Go is not installed", fix=f"install Go {required} or newer and put `go` on PATH")
    found = parse_version(run(["go", "env", "GOVERSION"], timeout=30).stdout)
    need = parse_version(required)
    if found is None or need is None or found < need:
        raise PrerequisiteMissing(
            f"Go {required} or newer is needed to build the platform (found {found})",
            fix="install a newer Go and put it first on PATH",
        )
    return ".".join(map(str, found))


def check_java(needed_by: str) -> None:
    """PrerequisiteMissing unless Java 17+ and Maven are installed (``needed_by`` names the component)."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        missing = "java" if shutil.which("java") is None else "mvn"
        raise PrerequisiteMissing(
            f"{missing} is not installed ({needed_by} needs Java 17 and Maven)",
            fix="install a Java 17 JDK and Maven (Debian: apt-get install openjdk-17-jdk maven)",
        )
    out = run(["java", "-version"], timeout=30)
    found = parse_version(out.stderr + out.stdout)
    if found is None or found[0] < 17:
        raise PrerequisiteMissing(
            f"Java 17 or newer is needed for {needed_by} (found {found})", fix="install openjdk-17-jdk"
        )


def check_apt() -> None:
    for program in ("apt-get", "apt-cache", "dpkg-deb"):
        if shutil.which(program) is None:
            raise PrerequisiteMissing(
                f"{program} is not available: Prometheus and Redis come from Debian packages",
                fix="run on Debian/Ubuntu, or put prometheus and redis-server of the "
                "pinned versions on PATH (or point OPSLAB_BIN_<TOOL> at them)",
            )


# --------------------------------------------------------------------------- Go


def go_env(ctx: BuildContext, component: Component | None = None) -> dict[str, str]:
    """The go command's environment: the local Go, or the release ``component`` pins (GOTOOLCHAIN)."""
    toolchain = f"go{component.go_toolchain}" if component and component.go_toolchain else "local"
    return {"CGO_ENABLED": "0", "GOTOOLCHAIN": toolchain, "GOFLAGS": "-mod=readonly -buildvcs=false"}


def ensure_go_module(component: Component, ctx: BuildContext) -> Path:
    """platform/go/<name>/, regenerated (and tidied) if its go.mod does not pin the right version."""
    module_dir = ctx.root / "platform" / "go" / component.name
    gomod_file = module_dir / "go.mod"
    want = f"v{component.version}"
    sums = module_dir / "go.sum"
    current = gomod.required_version(gomod_file.read_text(), component.go_module) if gomod_file.is_file() else None
    if current == want and sums.is_file():
        return module_dir
    ctx.progress("generating go.mod")
    download = ["go", "mod", "download", "-json", f"{component.go_module}@{want}"]
    info = run(download, timeout=600, env=go_env(ctx, component))
    if not info.ok:
        raise ToolchainError(
            f"cannot download {component.go_module}@{want}: {info.tail()}",
            fix="check the version in platform/versions.toml and that the Go module proxy is reachable",
        )
    upstream_path = Path(_json_field(info.stdout, "GoMod"))
    module = gomod.module_for(
        component.name, component.go_module, component.version, component.packages, upstream_path.read_text()
    )
    write_atomic(gomod_file, module.render())
    (module_dir / "go.sum").unlink(missing_ok=True)
    env = {**go_env(ctx, component), "GOFLAGS": "-mod=mod"}
    stream(["go", "mod", "tidy"], ctx, cwd=module_dir, env=env, what=f"go mod tidy for {component.name}")
    return module_dir


def _json_field(text: str, key: str) -> str:
    match = re.search(rf'"{key}":\s*"([^"]+)"', text)
    if not match:
        raise ToolchainError(f"`go mod download` did not report {key}")
    return match.group(1)


def build_go(component: Component, ctx: BuildContext) -> None:
    module_dir = ensure_go_module(component, ctx)
    gomod_text = (module_dir / "go.mod").read_text()
    # A pinned toolchain (GOTOOLCHAIN) satisfies the go directive itself; the local Go only runs it.
    check_go(MINIMUM_GO if component.go_toolchain else gomod.go_directive(gomod_text))
    bindir = ctx.stage / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    compiled = 0

    def on_line(line: str) -> None:
        nonlocal compiled
        if line and not line.startswith(("go: ", "#")):
            compiled += 1
            if compiled % 25 == 0:
                ctx.progress(f"compiled {compiled} packages")

    ldflags = " ".join(("-s", "-w", *component.ldflags))
    args = [
        "go",
        "build",
        "-v",
        "-trimpath",
        "-ldflags",
        ldflags,
        *(["-tags", ",".join(component.tags)] if component.tags else []),
        "-o",
        str(bindir) + "/",
        *component.packages,
    ]
    ctx.progress(f"downloading modules and compiling (Go {component.go_toolchain or 'local'})")
    stream(args, ctx, cwd=module_dir, env=go_env(ctx, component), on_line=on_line, what=f"go build of {component.name}")
    for built, wanted in component.renames:
        (bindir / built).rename(bindir / wanted)


# --------------------------------------------------------------------------- Maven (Kafka, ElasticMQ)


def build_maven(component: Component, ctx: BuildContext) -> None:
    """Copy the component's jars and their dependencies into libs/; write a bin/ script per launcher."""
    check_java(component.name)
    libs = ctx.stage / "libs"
    pom = ctx.root / "platform" / "java" / component.name / "pom.xml"
    properties = [f"-D{key}={value}" for key, value in component.maven_properties]
    args = [
        "mvn", "-B", "-f", str(pom), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={libs}", *properties,
    ]  # fmt: skip
    ctx.progress("resolving jars")
    fetched = 0

    def on_line(line: str) -> None:
        nonlocal fetched
        if "Downloaded from" in line:
            fetched += 1
            if fetched % 20 == 0:
                ctx.progress(f"downloaded {fetched} artifacts")

    stream(args, ctx, on_line=on_line, what=f"Maven fetch of the {component.name} jars")
    if not any(libs.glob(component.main_jar)):
        raise ToolchainError(f"Maven finished but no {component.main_jar} was fetched", fix=f"see {ctx.log}")
    bindir = ctx.stage / "bin"
    bindir.mkdir()
    opts_var, opts_default = component.java_opts
    for tool, main_class in component.launchers:
        script = (
            "#!/bin/sh\n"
            f"# {tool}: {component.name} {component.version}, run from the jars next to this script.\n"
            'here="$(cd "$(dirname "$0")/.." && pwd)"\n'
            f'exec "${{JAVA:-java}}" ${{{opts_var}:-{opts_default}}} -cp "$here/libs/*" {main_class} "$@"\n'
        )
        write_atomic(bindir / tool, script, mode=0o755)


# --------------------------------------------------------------------------- Debian


def debian_candidate(package: str, prefix: str) -> str:
    """The newest version of a Debian package in the archive whose upstream part starts with ``prefix``."""
    out = run(["apt-cache", "madison", package], timeout=60)
    versions = [line.split("|")[1].strip() for line in out.stdout.splitlines() if line.count("|") >= 2]
    for version in versions:  # madison lists newest first
        upstream = version.split(":", 1)[-1]
        if upstream == prefix or upstream.startswith(prefix + ".") or upstream.startswith(prefix + "+"):
            return version
    if not versions:
        raise ToolchainError(
            f"Debian package {package} is not in the package lists",
            fix="run `apt-get update` (as root), then `opslab setup` again",
        )
    raise ToolchainError(
        f"Debian offers {package} {', '.join(versions)}, none of them {prefix}.x",
        fix=f"change [{package}] in platform/versions.toml, or put a {prefix} binary on PATH",
    )


def build_debian(component: Component, ctx: BuildContext) -> None:
    check_apt()
    downloads = ctx.stage / ".debs"
    downloads.mkdir()
    specs = [f"{pkg}={debian_candidate(pkg, component.version)}" for pkg in component.packages]
    specs += list(component.libraries)
    ctx.progress(f"downloading {', '.join(s.split('=')[0] for s in specs)}")
    stream(["apt-get", "download", *specs], ctx, cwd=downloads, what=f"apt-get download for {component.name}")
    root = ctx.stage / "root"
    for deb in sorted(downloads.glob("*.deb")):
        out = run(["dpkg-deb", "-x", str(deb), str(root)], timeout=300)
        if not out.ok:
            raise ToolchainError(f"cannot unpack {deb.name}: {out.tail()}")
    shutil.rmtree(downloads)
    bindir = ctx.stage / "bin"
    bindir.mkdir()
    libdir = root / "usr" / "lib" / DEBIAN_MULTIARCH
    for tool, rel in component.binaries.items():
        target = root / rel
        if not target.exists():
            raise ToolchainError(f"package for {component.name} has no {rel}")
        libraries = f"$here/root/usr/lib/{DEBIAN_MULTIARCH}"
        env_line = f'export LD_LIBRARY_PATH="{libraries}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"\n'
        script = (
            "#!/bin/sh\n"
            f"# {tool} from the Debian package unpacked next to this script.\n"
            'here="$(cd "$(dirname "$0")/.." && pwd)"\n'
            + (env_line if component.libraries and libdir.is_dir() else "")
            + f'exec "$here/root/{rel}" "$@"\n'
        )
        write_atomic(bindir / tool, script, mode=0o755)


# --------------------------------------------------------------------------- Terraform providers

MIRROR_HOSTS = ("registry.terraform.io", "registry.opentofu.org")


def module_dir(spec: str, ctx: BuildContext, env: dict[str, str] | None = None) -> Path:
    """Download ``path@version`` through the Go module proxy; its (read-only) directory."""
    out = run(["go", "mod", "download", "-json", spec], timeout=900, env=env or go_env(ctx))
    if not out.ok:
        raise ToolchainError(f"cannot download {spec}: {out.tail()}", fix="check platform/versions.toml")
    return Path(_json_field(out.stdout, "Dir"))


def _writable_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("vendor", "*_test.go"))
    for path in [target, *target.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    return target


def build_providers(component: Component, ctx: BuildContext) -> None:
    """Build each provider pinned in versions.toml into mirror/<host>/<namespace>/<name>/<version>/."""
    check_go(MINIMUM_GO)
    work = ctx.stage / ".src"
    env = {**go_env(ctx), "GOFLAGS": "-mod=mod -buildvcs=false"}
    binaries = ctx.stage / "bin"
    binaries.mkdir(parents=True)
    for pin in ctx.versions.providers:
        ctx.progress(f"{pin.name} {pin.version}: fetching source")
        src = _writable_copy(module_dir(pin.module, ctx), work / pin.name)
        if pin.shim:
            shim_root = work / f"shim-{pin.name}"
            _writable_copy(module_dir(pin.shim.source, ctx), shim_root / pin.shim.directory)
            (shim_root / pin.shim.directory / "go.mod").unlink(missing_ok=True)
            write_atomic(shim_root / "go.mod", f"module {pin.shim.module}\n\ngo 1.16\n")
            stream(["go", "mod", "edit", f"-replace={pin.shim.module}={shim_root}"], ctx, cwd=src, env=env,
                   what=f"go mod edit for {pin.name}")  # fmt: skip
        for patch in pin.patches:
            # GIT_CEILING_DIRECTORIES keeps git from applying to an enclosing repository instead.
            stream(["git", "apply", "-p1", str(ctx.root / patch)], ctx, cwd=src, what=f"applying {patch}",
                   env={"GIT_CEILING_DIRECTORIES": str(src.parent)})  # fmt: skip
        for requirement in pin.require:
            stream(["go", "mod", "edit", f"-require={requirement}"], ctx, cwd=src, env=env,
                   what=f"go mod edit for {pin.name}")  # fmt: skip
        ctx.progress(f"{pin.name} {pin.version}: compiling")
        binary = binaries / f"terraform-provider-{pin.name}"
        stream(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary), "."], ctx, cwd=src, env=env,
               what=f"go build of the {pin.name} provider")  # fmt: skip
        for host in MIRROR_HOSTS:
            target = ctx.stage / "mirror" / host / pin.namespace / pin.name / pin.version / f"linux_{GO_ARCH}"
            target.mkdir(parents=True)
            # The unpacked mirror layout needs real files (tofu does not follow a symlinked directory).
            (target / f"terraform-provider-{pin.name}_v{pin.version}").hardlink_to(binary)
    shutil.rmtree(work)


# --------------------------------------------------------------------------- opslab's own Go modules


def build_local_go(component: Component, ctx: BuildContext) -> None:
    """Build platform/go/<name>/ (its go.mod and go.sum are committed) with the Go release it needs
    (GOTOOLCHAIN: the go command fetches that release as a module), and ship its CRDs in crds/."""
    check_go(MINIMUM_GO)
    module = ctx.root / "platform" / "go" / component.name
    if not (module / "go.mod").is_file():
        raise ToolchainError(f"{module}/go.mod is missing", fix="restore it with `git checkout -- platform/go/`")
    env = go_env(ctx, component)
    bindir = ctx.stage / "bin"
    bindir.mkdir(parents=True)
    ctx.progress(f"downloading modules and compiling (Go {component.go_toolchain or 'local'})")
    binary = bindir / component.tools[0].name
    ldflags = f"-s -w -X main.version={component.version}"
    stream(["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(binary), *component.packages], ctx,
           cwd=module, env=env, what=f"go build of {component.name}")  # fmt: skip
    if component.crds:
        crds = ctx.stage / "crds"
        crds.mkdir()
        for spec, file in component.crds:
            source = module_dir(spec, ctx, env) / file
            if not source.is_file():
                raise ToolchainError(f"{spec} has no {file}", fix="check the Flux version in toolchain/catalog.py")
            shutil.copyfile(source, crds / Path(file).name)


BUILDERS: dict[Source, Callable[[Component, BuildContext], None]] = {
    Source.GO: build_go,
    Source.MAVEN: build_maven,
    Source.DEBIAN: build_debian,
    Source.PROVIDERS: build_providers,
    Source.LOCAL_GO: build_local_go,
}
