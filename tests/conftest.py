"""The real platform, started once per test session in its own state directory and ports.

The session's platform never touches the learner's own (`make up`) platform: it lives under a
temporary state directory and every port is shifted by PORT_OFFSET (OPSLAB_TEST_PORT_OFFSET, default
1000; the lifecycle tests' small platform takes PORT_OFFSET + 1000, the incident world PORT_OFFSET +
1500). A second checkout testing at the same time needs an offset whose ports miss those sets and
stay below the ephemeral range (32768 up): 11000 does (5000 does not: etcd would land on the first
session's Redis; 12000 puts the world's ports among the ephemeral ones); a collision fails fast, `up`
names the taken port. The platform is stopped and purged at the end of the session. When a test
fails, the tail of every component log is printed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from kubernetes import client

from opslab.grading import isolation
from opslab.primitives.processes import processes_mentioning, terminate
from opslab.runtime import kube
from opslab.runtime.lifecycle import Platform
from tests.integration.incident_world import OFFSET as WORLD_OFFSET
from tests.integration.incident_world import World
from tests.labs.support import Concurrent, Track, all_tracks
from tests.platforms import OWNER_FILE, make_platform, shifted_settings

PORT_OFFSET = int(os.environ.get("OPSLAB_TEST_PORT_OFFSET", "1000"))


def stop_stale_test_platforms(current: Path) -> None:
    """Stop platforms an earlier, killed test session left running (they hold the shifted ports).

    They run from state directories under pytest's temporary root, outside this session's own, and
    their owner file names a pytest process that is gone. A platform whose session still runs (another
    checkout testing at another port offset) is left alone.
    """
    pytest_root = current.parent
    if not pytest_root.name.startswith("pytest-of-"):
        return  # a --basetemp of the caller's choosing: its siblings are not ours to stop
    stale = []
    for proc in processes_mentioning(str(pytest_root)):
        try:
            cwd = Path(proc.cwd())
            if cwd.is_relative_to(pytest_root) and not cwd.is_relative_to(current) and not session_alive(cwd):
                stale.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
            continue
    terminate(stale, grace=10)


def session_alive(directory: Path) -> bool:
    """Whether the test session owning the platform that runs in ``directory`` still runs."""
    for folder in (directory, *directory.parents):
        owner = folder / OWNER_FILE
        if owner.is_file():
            return isolation.owner_alive(owner.read_text().strip())
    return False


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    stop_stale_test_platforms(tmp_path_factory.getbasetemp())
    state = tmp_path_factory.mktemp("opslab-state")
    (state / OWNER_FILE).write_text(isolation.owner_token() + "\n")
    instance = make_platform(shifted_settings(state, PORT_OFFSET))
    try:
        instance.up()
        yield instance
    finally:
        instance.down(purge=True)


GRADINGS_WANTED = pytest.StashKey[set[str]]()
"""The keys of the lab gradings the selected tests read (see the ``grading`` marker)."""
WORLD_WANTED = pytest.StashKey[list[str]]()
"""The incidents the selected tests read from the incident world (see the ``incident_world`` marker)."""


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected what will not run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = set()
    for item in items:
        marker = item.get_closest_marker("grading")
        params = getattr(item, "callspec", None)
        if marker is None or params is None:
            continue
        track: Track = params.params["track"]
        what = marker.args[0]
        wanted.add(track.key(params.params["mutant"].name if what == "mutant" else what))
    config.stash[GRADINGS_WANTED] = wanted
    in_world = [i for i in items if i.get_closest_marker("incident_world")]
    incidents = [i.callspec.params["name"] for i in in_world if hasattr(i, "callspec")]
    shop_gradings = [_world_key(i) for i in items if i.get_closest_marker("world_grading") and hasattr(i, "callspec")]
    config.stash[WORLD_WANTED] = incidents + shop_gradings  # the world grades after its incidents
    # The tests that time whole gradings and start-ups (GRADINGS_WAIT_FOR) run first, then those that
    # stop Kafka or Redis, and only then anything that starts the gradings or the incident world:
    # never while a grading needs those components, never on a machine busy grading.
    if wanted or in_world or shop_gradings:
        first = [i for i in items if i.path.name in GRADINGS_WAIT_FOR]
        stoppers = [i for i in items if i.get_closest_marker("before_gradings") and i not in first]
        early = {id(i) for i in first + stoppers}
        items[:] = first + stoppers + [i for i in items if id(i) not in early]
    # The unit tests need no platform: they run while the gradings still do, before tests/labs
    # waits on the gradings' results, instead of after them.
    if wanted:
        unit = [i for i in items if "unit" in i.path.relative_to(config.rootpath).parts[:2]]
        labs = [i for i in items if i not in unit and "labs" in i.path.relative_to(config.rootpath).parts[:2]]
        if unit and labs:
            others = [i for i in items if i not in unit]
            at = others.index(labs[0])
            items[:] = others[:at] + unit + others[at:]
    # The incident world's results are read last among the integration tests (after the unit tests,
    # before the lab gradings' results): the world works through its incidents meanwhile.
    if in_world:
        rest = [i for i in items if i not in in_world]
        labs = [i for i in rest if "labs" in i.path.relative_to(config.rootpath).parts[:2]]
        at = rest.index(labs[0]) if labs else len(rest)
        items[:] = rest[:at] + in_world + rest[at:]


def _world_key(item: pytest.Item) -> str:
    """The grading key a ``world_grading`` test reads from the incident world (``6:solution``)."""
    params = item.callspec.params
    track: Track = params["track"]
    return track.key(params["what"])


@pytest.fixture(scope="session")
def gradings(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Concurrent]:
    """Every lab grading tests/labs looks at (solution, starter, each mutant, per track), submitted at
    once and graded ``OPSLAB_TEST_GRADING_JOBS`` at a time (default 3) on the session's platform.

    Grading runs are isolated (namespaces, nodes, topics, a Prometheus and ports of their own), so
    they run while the other platform tests do, and the lab tests only collect their results.
    """
    pool = Concurrent(
        platform, tmp_path_factory.mktemp("gradings"), jobs=int(os.environ.get("OPSLAB_TEST_GRADING_JOBS", "3")),
        history=platform.settings.paths.cache / GRADING_HISTORY,
    )  # fmt: skip
    wanted = pytestconfig.stash.get(GRADINGS_WANTED, set())
    tracks: list[Track] = all_tracks()
    # Whole-lab gradings first (they take longest), then the single-check mutant runs; within each,
    # the longest last time first (unknown ones keep their order, after the known ones).
    # A lab's shop checks are graded in the incident world (see world_grading), the rest here.
    whole = [(track.key(what), track, source, None) for track in tracks
             for what, source in (("solution", track.solution), ("starter", track.starter))]  # fmt: skip
    mutants = [(track.key(m.name), track, track.solution, m) for track in tracks for m in track.mutants
               if not track.in_world(m.name)]  # fmt: skip
    for group in (whole, mutants):
        for key, track, source, mutant in sorted(group, key=lambda item: -pool.expected(item[0])):
            if key in wanted:
                pool.submit(key, track.lab, source, mutant, skip=None if mutant else track.shop_checks)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def incident_world(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[World]:
    """A second platform, in a process of its own, on which the oracle works through the selected
    incidents while the session's platform runs everything else (tests/integration/incident_world.py)."""
    stop_stale_test_platforms(tmp_path_factory.getbasetemp())  # a killed session's world holds the ports
    world = World(
        tmp_path_factory.getbasetemp() / "incident-world", PORT_OFFSET + WORLD_OFFSET,
        pytestconfig.stash.get(WORLD_WANTED, []),
    )  # fmt: skip
    world.start()
    try:
        yield world
    finally:
        world.close()


GRADING_HISTORY = "test-grading-seconds.json"
"""In opslab's cache: how long each lab grading of the test session took, for ordering the next one."""

GRADINGS_WAIT_FOR = {"test_grading.py", "test_lifecycle.py"}
"""Platform tests that run before the lab gradings start: they time whole gradings and whole
platform start-ups against their limits, which a machine busy grading would make fail."""


@pytest.fixture(autouse=True)
def _lab_gradings_start_with_the_platform(request: pytest.FixtureRequest) -> None:
    """When lab tests (or the incident world's) are selected, start their gradings (and the world) as
    soon as a platform test runs (after GRADINGS_WAIT_FOR), so they overlap the integration tests
    instead of running after them."""
    if request.node.path.name in GRADINGS_WAIT_FOR or request.node.get_closest_marker("before_gradings"):
        return
    if not request.node.get_closest_marker("platform"):
        return
    if request.config.stash.get(GRADINGS_WANTED, set()):
        request.getfixturevalue("gradings")
    if request.config.stash.get(WORLD_WANTED, []):
        request.getfixturevalue("incident_world")


@pytest.fixture(scope="session")
def api(platform: Platform) -> client.ApiClient:
    return kube.api_client(platform.paths.kubeconfig)


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "platform" in getattr(item, "fixturenames", ()):
        instance = item.funcargs.get("platform") if hasattr(item, "funcargs") else None
        if isinstance(instance, Platform):
            report.sections.append(("platform logs", _log_tails(instance)))


def _log_tails(instance: Platform, lines: int = 15) -> str:
    parts = []
    for log in sorted(instance.paths.logs.glob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.name}\n" + "\n".join(text))
    return "\n".join(parts)
