"""ElasticMQ, the SQS-compatible queue: its pin, its fetch, its configuration and the boto3 helper."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from opslab.primitives.errors import ConfigError, ToolchainError
from opslab.runtime import sqs
from opslab.runtime.component import RuntimeContext
from opslab.runtime.components.elasticmq import ElasticMQ, render_config
from opslab.runtime.endpoints import endpoint_environment
from opslab.runtime.registry import Registry
from opslab.settings import load
from opslab.toolchain.builders import BuildContext, build_maven
from opslab.toolchain.catalog import ELASTICMQ_MAIN, Source, components, tool_index
from opslab.toolchain.resolve import Toolchain
from opslab.toolchain.versions import load_versions

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = load_versions(ROOT / "platform" / "versions.toml")


def context(tmp_path: Path, environ: dict[str, str] | None = None) -> RuntimeContext:
    settings = load({"state_dir": str(tmp_path / "state")}, environ=environ or {}, root=ROOT)
    return RuntimeContext(settings, Toolchain(VERSIONS, tmp_path / "cache", environ={}, which=lambda name: None))


def blocks(text: str) -> dict[str, str]:
    """The top-level ``name { ... }`` blocks of a HOCON file (no nesting needed here)."""
    return dict(re.findall(r"^([\w-]+) \{\n(.*?)^\}", text, flags=re.MULTILINE | re.DOTALL))


# --------------------------------------------------------------------------- pin and fetch


def test_elasticmq_is_pinned_and_fetched_with_maven() -> None:
    assert re.fullmatch(r"1\.7\.\d+", VERSIONS.elasticmq)
    entry = next(c for c in components(VERSIONS) if c.name == "elasticmq")
    assert entry.source is Source.MAVEN
    assert entry.version == VERSIONS.elasticmq
    assert dict(entry.maven_properties) == {"elasticmq.version": VERSIONS.elasticmq}
    assert dict(entry.launchers) == {"elasticmq-server": ELASTICMQ_MAIN}
    assert tool_index(VERSIONS)["elasticmq-server"] == entry
    assert not entry.tools[0].on_path  # an elasticmq-server on PATH is not ours to trust
    pom = (ROOT / "platform" / "java" / "elasticmq" / "pom.xml").read_text()
    assert "<artifactId>elasticmq-server_2.13</artifactId>" in pom
    assert "<version>${elasticmq.version}</version>" in pom


def test_every_maven_component_has_its_own_pom() -> None:
    for component in components(VERSIONS):
        if component.source is Source.MAVEN:
            pom = ROOT / "platform" / "java" / component.name / "pom.xml"
            text = pom.read_text()
            for key, _ in component.maven_properties:
                assert f"<{key}>" in text, f"{pom} has no default for {key}"


def fake_jdk(bindir: Path, jar: str) -> Path:
    """`java` that reports 17 and `mvn` that records its arguments and 'fetches' one jar."""
    bindir.mkdir(parents=True)
    scripts = {
        "java": "#!/bin/sh\necho 'openjdk version \"17.0.15\" 2025-04-15' >&2\n",
        "mvn": (
            "#!/bin/sh\n"
            f'echo "$@" > "{bindir}/mvn.args"\n'
            'for arg in "$@"; do case "$arg" in -DoutputDirectory=*) out="${arg#-DoutputDirectory=}";; esac; done\n'
            f'mkdir -p "$out" && touch "$out/{jar}"\n'
        ),
    }
    for name, text in scripts.items():
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    return bindir


@pytest.mark.parametrize(
    ("name", "jar", "opts"),
    [
        ("elasticmq", f"elasticmq-server_2.13-{VERSIONS.elasticmq}.jar", "${ELASTICMQ_JAVA_OPTS:--Xmx128m}"),
        ("kafka", f"kafka_2.13-{VERSIONS.kafka}.jar", "${KAFKA_JAVA_OPTS:--Xmx256m}"),
    ],
)
def test_the_maven_builder_fetches_with_the_components_pom_and_writes_its_launchers(
    name: str, jar: str, opts: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    component = next(c for c in components(VERSIONS) if c.name == name)
    bindir = fake_jdk(tmp_path / "jdk", jar)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    stage = tmp_path / "stage"
    stage.mkdir()
    ctx = BuildContext(root=ROOT, stage=stage, log=tmp_path / "setup.log", versions=VERSIONS, progress=lambda _: None)
    build_maven(component, ctx)

    args = (bindir / "mvn.args").read_text().split()
    assert args[args.index("-f") + 1] == str(ROOT / "platform" / "java" / name / "pom.xml")
    assert {f"-D{key}={value}" for key, value in component.maven_properties} <= set(args)
    assert f"-DoutputDirectory={stage / 'libs'}" in args
    assert sorted(p.name for p in (stage / "bin").iterdir()) == sorted(tool for tool, _ in component.launchers)
    for tool, main_class in component.launchers:
        launcher = stage / "bin" / tool
        assert launcher.stat().st_mode & stat.S_IXUSR
        text = launcher.read_text()
        assert main_class in text and '"$here/libs/*"' in text and opts in text


def test_a_fetch_without_the_server_jar_fails_with_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    component = next(c for c in components(VERSIONS) if c.name == "elasticmq")
    monkeypatch.setenv("PATH", f"{fake_jdk(tmp_path / 'jdk', 'unrelated.jar')}:/usr/bin:/bin")
    stage = tmp_path / "stage"
    stage.mkdir()
    ctx = BuildContext(root=ROOT, stage=stage, log=tmp_path / "setup.log", versions=VERSIONS, progress=lambda _: None)
    with pytest.raises(ToolchainError, match=r"no elasticmq-server_2\.13-\*\.jar was fetched") as failure:
        build_maven(component, ctx)
    assert failure.value.fix == f"see {tmp_path / 'setup.log'}"


# --------------------------------------------------------------------------- the component


def test_the_config_binds_the_sqs_api_to_loopback_and_keeps_queues_in_memory() -> None:
    text = render_config(19324)
    assert text.splitlines()[3] == 'include classpath("application.conf")'  # keeps the long-poll timeout
    parts = blocks(text)
    assert 'bind-hostname = "127.0.0.1"' in parts["rest-sqs"]
    assert "bind-port = 19324" in parts["rest-sqs"]
    assert 'host = "127.0.0.1"' in parts["node-address"] and "port = 19324" in parts["node-address"]
    assert "enabled = false" in parts["queues-storage"] and "enabled = false" in parts["messages-storage"]
    assert f'region = "{sqs.REGION}"' in parts["aws"] and f'accountId = "{sqs.ACCOUNT_ID}"' in parts["aws"]
    assert "0.0.0.0" not in text
    assert not re.search(r"rest-stats|stats-port|ui", text)  # ElasticMQ 1.7 serves no UI port


def test_the_component_listens_on_the_sqs_port_and_runs_a_small_jvm_from_the_cache(tmp_path: Path) -> None:
    ctx = context(tmp_path, {"OPSLAB_PORT_SQS": "24324"})
    component = ElasticMQ(ctx)
    assert component.ports == {"sqs": 24324}
    assert component.endpoint == "127.0.0.1:24324"
    component.prepare()
    assert "bind-port = 24324" in component.config_path.read_text()
    assert component.config_files() == [component.config_path, component.logback_path]
    command = component.command()
    assert "-Xmx128m" in command
    assert f"-Dconfig.file={ctx.paths.config / 'elasticmq.conf'}" in command  # down finds it by its state dir
    classpath = command[command.index("-cp") + 1]
    assert classpath == str(tmp_path / "cache" / "elasticmq" / VERSIONS.elasticmq / "libs" / "*")
    assert command[-1] == ELASTICMQ_MAIN


def test_the_platform_runs_elasticmq_on_its_own_port(tmp_path: Path) -> None:
    registry = Registry(context(tmp_path))
    assert registry.get("elasticmq").ports == {"sqs": 19324}
    with pytest.raises(ConfigError, match="ports redis and sqs are both set to 16379"):
        context(tmp_path, {"OPSLAB_PORT_SQS": "16379"})


# --------------------------------------------------------------------------- boto3


def test_the_endpoint_environment_points_boto3_at_the_queue(tmp_path: Path) -> None:
    env = endpoint_environment(context(tmp_path, {"OPSLAB_PORT_SQS": "24324"}).settings)
    assert env["OPSLAB_SQS_URL"] == env["AWS_ENDPOINT_URL_SQS"] == "http://127.0.0.1:24324"
    assert env["OPSLAB_PORT_SQS"] == "24324"
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == sqs.REGION
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]


def test_the_client_helper_uses_the_platform_endpoint() -> None:
    client = sqs.client(environ={"OPSLAB_SQS_URL": "http://127.0.0.1:24324"})
    assert client.meta.endpoint_url == "http://127.0.0.1:24324"
    assert client.meta.region_name == sqs.REGION
    explicit = sqs.client("http://127.0.0.1:25324", environ={})
    assert explicit.meta.endpoint_url == "http://127.0.0.1:25324"
    assert sqs.queue_arn("orders-dlq") == f"arn:aws:sqs:{sqs.REGION}:{sqs.ACCOUNT_ID}:orders-dlq"


def test_the_client_helper_without_an_endpoint_says_how_to_get_one() -> None:
    with pytest.raises(ConfigError, match="OPSLAB_SQS_URL is not set") as failure:
        sqs.client(environ={})
    assert "source .opslab/env" in str(failure.value.fix)
