"""What opslab needs: each component (a unit that is built or fetched) and the tools it provides."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from opslab.toolchain.versions import Versions


class Source(Enum):
    """How a component is obtained when it is not found ready to use."""

    GO = "go"  # built from a generated Go module under platform/go/<component>/
    MAVEN = "maven"  # jars fetched by platform/java/<component>/pom.xml
    DEBIAN = "debian"  # a Debian package, downloaded and unpacked into the cache
    PROVIDERS = "providers"  # Terraform providers built into a filesystem mirror
    LOCAL_GO = "local-go"  # opslab's own Go module under platform/go/<component>/ (go.mod and go.sum committed)


@dataclass(frozen=True)
class Tool:
    """One program a component provides, and how to ask it for its version."""

    name: str
    version_args: tuple[str, ...] = ("--version",)
    on_path: bool = True
    """Whether a copy found on PATH may be used (when its version matches)."""
    minimum: bool = False
    """Accept any version at or above the pin (terraform >= 1.6) instead of an exact match."""
    pin: str | None = None
    """The version to check against, when it is not the component's own (terraform: "1.6")."""

    @property
    def env_var(self) -> str:
        """The environment variable that points opslab at an explicit binary for this tool."""
        return "OPSLAB_BIN_" + self.name.upper().replace("-", "_")


@dataclass(frozen=True)
class Component:
    """A unit of the toolchain, cached at ~/.cache/opslab/<name>/<version>/."""

    name: str
    version: str
    source: Source
    tools: tuple[Tool, ...]
    summary: str
    packages: tuple[str, ...] = ()
    """Go packages to build, or Debian packages to unpack."""
    go_module: str = ""
    """Go: the upstream module the generated platform/go/<name>/ module requires."""
    ldflags: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    """Go: build tags upstream's own release build sets (Thanos: slicelabels, which its label code needs)."""
    renames: tuple[tuple[str, str], ...] = ()
    """Go: binaries to rename after the build (go names them after the package's last element)."""
    binaries: dict[str, str] = field(default_factory=dict)
    """Debian: tool name -> path inside the unpacked package (e.g. alertmanager -> usr/bin/...)."""
    libraries: tuple[str, ...] = ()
    """Debian: extra library packages the binaries load (found through LD_LIBRARY_PATH)."""
    alternative: Tool | None = None
    """A tool on PATH that makes building this component unnecessary (terraform for OpenTofu)."""
    maven_properties: tuple[tuple[str, str], ...] = ()
    """Maven: -D properties for platform/java/<name>/pom.xml (the pinned versions it resolves)."""
    main_jar: str = ""
    """Maven: the jar that proves the fetch worked (a glob inside libs/, e.g. kafka_2.13-*.jar)."""
    launchers: tuple[tuple[str, str], ...] = ()
    """Maven: tool name -> Java main class; each gets a bin/ script running it from the jars in libs/."""
    java_opts: tuple[str, str] = ("", "")
    """Maven: the launchers' JVM options variable and its default (e.g. KAFKA_JAVA_OPTS, -Xmx256m)."""
    go_toolchain: str = ""
    """Go and local Go: the Go release to build with (GOTOOLCHAIN, fetched as a module), when the
    modules need a newer Go than the local one."""
    crds: tuple[tuple[str, str], ...] = ()
    """Local Go: CustomResourceDefinitions to ship in crds/: (module@version, file inside it)."""
    revision: str = ""
    """Bumped when what is built from the same version changes (a package added): the cache key is
    <version>-<revision>, so every machine builds the component again."""

    @property
    def cache_key(self) -> str:
        """The component's directory under ~/.cache/opslab/<name>/."""
        return f"{self.version}-{self.revision}" if self.revision else self.version


KAFKA_LAUNCHERS = (
    ("kafka-storage", "kafka.tools.StorageTool"),
    ("kafka-topics", "org.apache.kafka.tools.TopicCommand"),
    ("kafka-console-producer", "org.apache.kafka.tools.ConsoleProducer"),
    ("kafka-console-consumer", "org.apache.kafka.tools.consumer.ConsoleConsumer"),
    ("kafka-consumer-groups", "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"),
)
"""Kafka's command-line tools and the classes they run (Kafka's own bin/ scripts are not in its jars)."""

ELASTICMQ_MAIN = "org.elasticmq.server.Main"
"""ElasticMQ's server; it reads the file named by -Dconfig.file (Typesafe Config)."""

FLUX = "1.10.1"
"""The Flux release whose API modules platform/go/gitops requires, and whose CRDs it ships."""

TERRAFORM = Tool("terraform", version_args=("version",), minimum=True, pin="1.6")
"""terraform >= 1.6 on PATH is used instead of OpenTofu."""


def _version_ldflags(packages: tuple[str, ...], version: str) -> tuple[str, ...]:
    """The -X flags Kubernetes' own build sets, so `--version` prints the real version."""
    major, minor, _ = version.split(".")
    flags: list[str] = []
    for pkg in packages:
        flags += [
            f"-X {pkg}.gitVersion=v{version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.gitCommit=v{version}-opslab",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return tuple(flags)


def components(versions: Versions) -> tuple[Component, ...]:
    """Every component, in the order setup builds them (quick ones first, Kubernetes last)."""
    kube = versions.kubernetes
    return (
        Component(
            name="prometheus",
            version=versions.prometheus,
            source=Source.DEBIAN,
            tools=(Tool("prometheus"), Tool("promtool")),
            summary="Prometheus and promtool (Debian package)",
            packages=("prometheus",),
            binaries={"prometheus": "usr/bin/prometheus", "promtool": "usr/bin/promtool"},
            # The JavaScript its console templates draw graphs with (Debian links its web UI's
            # static/ files to these packages instead of shipping them).
            libraries=("libjs-rickshaw", "libjs-d3", "libjs-jquery", "libjs-bootstrap4"),
            revision="consoles",
        ),
        Component(
            name="alertmanager",
            version=versions.alertmanager,
            source=Source.GO,
            tools=(Tool("alertmanager"), Tool("amtool")),
            summary="Alertmanager and amtool (built from github.com/prometheus/alertmanager)",
            packages=(
                "github.com/prometheus/alertmanager/cmd/alertmanager",
                "github.com/prometheus/alertmanager/cmd/amtool",
            ),
            go_module="github.com/prometheus/alertmanager",
            ldflags=(
                f"-X github.com/prometheus/common/version.Version={versions.alertmanager}",
                "-X github.com/prometheus/common/version.Branch=opslab",
                "-X github.com/prometheus/common/version.BuildUser=opslab",
            ),
        ),
        Component(
            name="redis",
            version=versions.redis,
            source=Source.DEBIAN,
            tools=(Tool("redis-server"), Tool("redis-cli")),
            summary="Redis server and CLI (Debian packages)",
            packages=("redis-server", "redis-tools"),
            binaries={"redis-server": "usr/bin/redis-server", "redis-cli": "usr/bin/redis-cli"},
            libraries=("libjemalloc2", "liblzf1"),
        ),
        Component(
            name="pushgateway",
            version=versions.pushgateway,
            source=Source.DEBIAN,
            tools=(Tool("prometheus-pushgateway"),),
            summary="Prometheus Pushgateway, where batch jobs push their results (Debian package)",
            packages=("prometheus-pushgateway",),
            binaries={"prometheus-pushgateway": "usr/bin/prometheus-pushgateway"},
        ),
        Component(
            name="bubblewrap",
            version=versions.bubblewrap,
            source=Source.DEBIAN,
            tools=(Tool("bwrap"),),
            summary="bubblewrap, the sandbox graders run learner programs in (Debian package)",
            packages=("bubblewrap",),
            binaries={"bwrap": "usr/bin/bwrap"},
        ),
        Component(
            name="kafka",
            version=versions.kafka,
            source=Source.MAVEN,
            tools=tuple(Tool(name, on_path=False) for name, _ in KAFKA_LAUNCHERS),
            summary="Apache Kafka broker and tools (Maven jars)",
            maven_properties=(
                ("kafka.version", versions.kafka),
                ("log4j.version", versions.log4j),
                ("slf4j.version", versions.slf4j),
            ),
            main_jar="kafka_2.13-*.jar",
            launchers=KAFKA_LAUNCHERS,
            java_opts=("KAFKA_JAVA_OPTS", "-Xmx256m"),
        ),
        Component(
            name="elasticmq",
            version=versions.elasticmq,
            source=Source.MAVEN,
            tools=(Tool("elasticmq-server", on_path=False),),
            summary="ElasticMQ, an SQS-compatible queue (Maven jars)",
            maven_properties=(("elasticmq.version", versions.elasticmq),),
            main_jar="elasticmq-server_2.13-*.jar",
            launchers=(("elasticmq-server", ELASTICMQ_MAIN),),
            java_opts=("ELASTICMQ_JAVA_OPTS", "-Xmx128m"),
        ),
        Component(
            name="etcd",
            version=versions.etcd,
            source=Source.GO,
            tools=(Tool("etcd"),),
            summary="etcd (built from go.etcd.io/etcd/server/v3)",
            packages=("go.etcd.io/etcd/server/v3",),
            go_module="go.etcd.io/etcd/server/v3",
            renames=(("server", "etcd"),),
        ),
        Component(
            name="kwok",
            version=versions.kwok,
            source=Source.GO,
            tools=(Tool("kwok"), Tool("kwokctl")),
            summary="KWOK and kwokctl (built from sigs.k8s.io/kwok)",
            packages=("sigs.k8s.io/kwok/cmd/kwok", "sigs.k8s.io/kwok/cmd/kwokctl"),
            go_module="sigs.k8s.io/kwok",
            ldflags=(
                f"-X sigs.k8s.io/kwok/pkg/consts.Version=v{versions.kwok}",
                f"-X sigs.k8s.io/kwok/pkg/consts.KubeVersion=v{kube}",
            ),
        ),
        Component(
            name="opa",
            version=versions.opa,
            source=Source.GO,
            tools=(Tool("opa", version_args=("version",)),),
            summary="Open Policy Agent (built from github.com/open-policy-agent/opa)",
            packages=("github.com/open-policy-agent/opa",),
            go_module="github.com/open-policy-agent/opa",
            ldflags=(f"-X github.com/open-policy-agent/opa/v1/version.Version={versions.opa}",),
        ),
        Component(
            name="opentofu",
            version=versions.opentofu,
            source=Source.GO,
            tools=(Tool("tofu", version_args=("version",)),),
            summary="OpenTofu (built from github.com/opentofu/opentofu)",
            packages=("github.com/opentofu/opentofu/cmd/tofu",),
            go_module="github.com/opentofu/opentofu",
            ldflags=("-X github.com/opentofu/opentofu/version.dev=no",),
            alternative=TERRAFORM,
        ),
        Component(
            name="terraform-providers",
            version=versions.providers_digest,
            source=Source.PROVIDERS,
            tools=tuple(Tool(f"terraform-provider-{p.name}", on_path=False) for p in versions.providers),
            summary="Terraform providers "
            + ", ".join(f"{p.name} {p.version}" for p in versions.providers)
            + " (built from their Go modules into a filesystem mirror)",
        ),
        Component(
            name="registry",
            version=versions.registry,
            source=Source.GO,
            tools=(Tool("registry", on_path=False),),
            summary="the CNCF distribution OCI registry (built from github.com/distribution/distribution/v3)",
            packages=("github.com/distribution/distribution/v3/cmd/registry",),
            go_module="github.com/distribution/distribution/v3",
            ldflags=(f"-X github.com/distribution/distribution/v3/version.version=v{versions.registry}",),
        ),
        Component(
            name="crane",
            version=versions.crane,
            source=Source.GO,
            tools=(Tool("crane", version_args=("version",)),),
            summary="crane: builds, pushes and inspects images without a Docker engine (go-containerregistry)",
            packages=("github.com/google/go-containerregistry/cmd/crane",),
            go_module="github.com/google/go-containerregistry",
            ldflags=(f"-X github.com/google/go-containerregistry/cmd/crane/cmd.Version=v{versions.crane}",),
        ),
        Component(
            name="gitops",
            version=versions.gitops_digest,
            source=Source.LOCAL_GO,
            tools=(Tool("opslab-gitops", on_path=False),),
            summary="opslab's GitOps reconciler and Git server (platform/go/gitops, Flux's libraries)",
            packages=(".",),
            go_toolchain=versions.gitops_go,
            crds=(
                (
                    f"github.com/fluxcd/source-controller@v{FLUX}",
                    "config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml",
                ),
                (
                    f"github.com/fluxcd/kustomize-controller@v{FLUX}",
                    "config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml",
                ),
            ),
        ),
        Component(
            name="thanos",
            version=versions.thanos,
            source=Source.GO,
            tools=(Tool("thanos", on_path=False),),
            summary="Thanos: sidecar, store gateway, querier, compactor (built from github.com/thanos-io/thanos)",
            packages=("github.com/thanos-io/thanos/cmd/thanos",),
            go_module="github.com/thanos-io/thanos",
            ldflags=(
                f"-X github.com/prometheus/common/version.Version={versions.thanos}",
                "-X github.com/prometheus/common/version.Branch=opslab",
                "-X github.com/prometheus/common/version.BuildUser=opslab",
            ),
            # Thanos' release build (.promu.yml): its labels code assumes Prometheus' slice labels.
            tags=("netgo", "slicelabels"),
            go_toolchain=versions.thanos_go,
        ),
        Component(
            name="kubernetes",
            version=kube,
            source=Source.GO,
            tools=(
                Tool("kube-apiserver"),
                Tool("kube-controller-manager"),
                Tool("kube-scheduler"),
                Tool("kubectl", version_args=("version", "--client")),
            ),
            summary="kube-apiserver, controller-manager, scheduler, kubectl (built from k8s.io/kubernetes)",
            packages=(
                "k8s.io/kubernetes/cmd/kube-apiserver",
                "k8s.io/kubernetes/cmd/kube-controller-manager",
                "k8s.io/kubernetes/cmd/kube-scheduler",
                "k8s.io/kubernetes/cmd/kubectl",
            ),
            go_module="k8s.io/kubernetes",
            ldflags=_version_ldflags(("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"), kube),
        ),
    )


def tool_index(versions: Versions) -> dict[str, Component]:
    """Map each tool name to the component that provides it."""
    index: dict[str, Component] = {}
    for component in components(versions):
        for tool in component.tools:
            if tool.name in index:
                raise ValueError(f"tool {tool.name} is provided by both {index[tool.name].name} and {component.name}")
            index[tool.name] = component
    return index
