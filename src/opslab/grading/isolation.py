"""Isolation of grading runs: what a run creates is its own, labelled with its id, and removed.

Every grading run has an id (OPSLAB_GRADING_RUN, made by the runner). Everything the run creates
in the cluster carries the label ``opslab.dev/grading-run=<id>``: its namespace (the run's
anchor, annotated with the grader process that owns it), simulated nodes, cluster roles and
run-scoped CRDs; its Kafka topics and consumer groups, and its Redis keys, are named
``grading-<id>-...``.

Two sweeps remove them:
- ``sweep(run_id)`` after a run has ended, however it ended (the runner calls it);
- ``sweep_stale()`` before a run starts: it removes what runs whose grader process is gone left
  behind (a grader killed with SIGKILL, a machine that lost power).

Learner programs never use the admin kubeconfig: ``grant`` makes a ServiceAccount of the run,
binds it to the RBAC rules the lab needs, and writes a kubeconfig with a short-lived token from
the TokenRequest API (mode 0600).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException

from opslab.primitives.readiness import wait_for
from opslab.runtime import kubeconfig as kubeconfig_module

RUN_LABEL = "opslab.dev/grading-run"
OWNER_ANNOTATION = "opslab.dev/grading-owner"
TOPIC_PREFIX = "grading-"
LEARNER = "learner"
log = logging.getLogger("opslab.grading")
_RUN_ID = re.compile(r"^g[0-9a-f]{7}$")


def valid_run_id(value: str) -> bool:
    return bool(_RUN_ID.match(value))


def labels(run_id: str) -> dict[str, str]:
    return {RUN_LABEL: run_id, "app.kubernetes.io/managed-by": "opslab-grader"}


def owner_token(pid: int | None = None) -> str:
    """Who owns a run: ``<host>.<pid>.<process start time>`` of the grader process."""
    pid = pid or os.getpid()
    started = int(psutil.Process(pid).create_time())
    return f"{socket.gethostname()}.{pid}.{started}"


def owner_alive(token: str | None) -> bool:
    """Whether the grader process named by ``token`` still runs (on this host)."""
    if not token:
        return False
    try:
        host, pid, started = token.rsplit(".", 2)
        if host != socket.gethostname():
            return True  # not ours to judge
        proc = psutil.Process(int(pid))
        return abs(proc.create_time() - int(started)) < 2 and proc.status() != psutil.STATUS_ZOMBIE
    except (ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def topic_prefix(run_id: str) -> str:
    return f"{TOPIC_PREFIX}{run_id}-"


# ---------------------------------------------------------------------- the run's namespace


def create_namespace(api: client.ApiClient, run_id: str, *, suffix: str = "") -> str:
    """A namespace of the run (its anchor when ``suffix`` is empty), labelled and owned."""
    name = f"grade-{run_id}{'-' + suffix if suffix else ''}"
    body = client.V1Namespace(
        metadata=client.V1ObjectMeta(
            name=name,
            labels={**labels(run_id), "opslab.dev/grading": "true"},
            annotations={OWNER_ANNOTATION: owner_token()},
        )
    )
    client.CoreV1Api(api).create_namespace(body)
    return name


# ---------------------------------------------------------------------- learner access


@dataclass(frozen=True)
class Grant:
    """What a learner program may do: namespaced rules (a Role in the run's namespace) and
    cluster rules (a ClusterRole of the run). Each rule is a dict as in a Role's YAML."""

    rules: tuple[dict[str, Any], ...] = ()
    cluster_rules: tuple[dict[str, Any], ...] = ()
    writes_only_in: str = ""
    """A namespace name prefix: when set, an admission policy denies the learner every create,
    update and delete outside its own namespace and the namespaces whose names start with it
    (cluster rules that let it make namespaces, confined to the run's)."""


def _policy_rules(rules: Iterable[dict[str, Any]]) -> list[client.V1PolicyRule]:
    return [
        client.V1PolicyRule(
            api_groups=r.get("apiGroups", [""]),
            resources=r["resources"],
            verbs=r["verbs"],
            resource_names=r.get("resourceNames"),
        )
        for r in rules
    ]


def grant(
    api: client.ApiClient,
    run_id: str,
    namespace: str,
    access: Grant,
    *,
    kubeconfig: Path,
    admin_kubeconfig: Path,
    seconds: int = 3600,
) -> Path:
    """A ServiceAccount of the run bound to ``access``, and a kubeconfig with its token (0600)."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    subject = client.RbacV1Subject(kind="ServiceAccount", name=LEARNER, namespace=namespace)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=LEARNER, labels=labels(run_id)))
    )
    if access.rules:
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name=LEARNER, labels=labels(run_id)), rules=_policy_rules(access.rules)
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name=LEARNER, labels=labels(run_id)),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=LEARNER),
                subjects=[subject],
            ),
        )
    if access.cluster_rules:
        name = f"opslab-grading-{run_id}-{LEARNER}"
        rbac.create_cluster_role(
            client.V1ClusterRole(
                metadata=client.V1ObjectMeta(name=name, labels=labels(run_id)),
                rules=_policy_rules(access.cluster_rules),
            )
        )
        rbac.create_cluster_role_binding(
            client.V1ClusterRoleBinding(
                metadata=client.V1ObjectMeta(name=name, labels=labels(run_id)),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=name),
                subjects=[subject],
            )
        )
    written = kubeconfig_module.write_service_account(
        kubeconfig, admin_kubeconfig, core, account=LEARNER, namespace=namespace, seconds=seconds, context="learner"
    )
    if access.writes_only_in:
        user = f"system:serviceaccount:{namespace}:{LEARNER}"
        confine(api, run_id, user, namespace, access.writes_only_in, probe_with=written)
    return written


def confine(
    api: client.ApiClient, run_id: str, user: str, home: str, prefix: str, *, probe_with: Path, timeout: float = 30
) -> None:
    """A ValidatingAdmissionPolicy of the run: ``user`` may create, update and delete only in
    namespace ``home`` and in namespaces named ``prefix``... (and those namespaces themselves).
    RBAC cannot say "namespaces with this name prefix"; admission can. Returns once it is enforced,
    probed by a dry run with ``probe_with`` (the user's kubeconfig) creating a namespace outside
    the prefix: the user's RBAC must let it create namespaces, which is why it is confined."""
    name = f"opslab-grading-{run_id}-{LEARNER}"
    admission = client.AdmissionregistrationV1Api(api)
    # The namespace a request changes: its own for a namespaced object, the object for a Namespace.
    where = "(request.namespace != '' ? request.namespace : "
    where += "(request.resource.resource == 'namespaces' ? request.name : ''))"
    policy: Any = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "labels": labels(run_id)},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"],
                                                    "operations": ["CREATE", "UPDATE", "DELETE"]}]},
            "matchConditions": [{"name": "learner", "expression": f"request.userInfo.username == '{user}'"}],
            "validations": [{
                "expression": f"{where} == '{home}' || {where}.startsWith('{prefix}')",
                "messageExpression": f"'this grading identity may change only namespace {home} and namespaces "
                                     f"named {prefix}...: not ' + {where} + '/' + request.resource.resource",
            }],
        },
    }  # fmt: skip
    binding: Any = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": labels(run_id)},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }  # fmt: skip
    admission.create_validating_admission_policy(policy)
    admission.create_validating_admission_policy_binding(binding)
    # The API server enforces a new policy once its informer has it: probe with a dry run as the user.
    probe = client.V1Namespace(metadata=client.V1ObjectMeta(name=f"opslab-confine-probe-{run_id}"))

    def enforced(learner: client.ApiClient) -> bool:
        try:
            client.CoreV1Api(learner).create_namespace(probe, dry_run="All", _request_timeout=10)
        except ApiException as exc:
            return exc.status in (403, 422) and "grading identity" in str(exc.body)
        return False

    with kube_config.new_client_from_config(str(probe_with)) as learner:
        if not wait_for(lambda: enforced(learner), timeout, interval=0.2):
            raise RuntimeError(f"the admission policy {name} was not enforced within {timeout:.0f} s")


def token_subject(kubeconfig: Path) -> str:
    """The user a kubeconfig authenticates as, for messages (``system:serviceaccount:ns:name``)."""
    user = yaml.safe_load(kubeconfig.read_text())["users"][0]
    if "token" not in user["user"]:
        return user["name"]
    payload = user["user"]["token"].split(".")[1]
    claims = yaml.safe_load(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims.get("sub", user["name"]))


# ---------------------------------------------------------------------- sweeping


def _run_of(obj: Any) -> str:
    return str(((obj.metadata.labels if obj.metadata else None) or {}).get(RUN_LABEL, ""))


def live_runs(api: client.ApiClient) -> set[str]:
    """Runs whose anchor namespace exists and whose grader process still runs."""
    live = set()
    for ns in client.CoreV1Api(api).list_namespace(label_selector=RUN_LABEL).items:
        meta = ns.metadata
        owner = (meta.annotations or {}).get(OWNER_ANNOTATION) if meta else None
        if meta is not None and meta.deletion_timestamp is None and owner_alive(owner):
            live.add(_run_of(ns))
    return live


def _release_custom_objects(api: client.ApiClient, namespace: str) -> None:
    """Clear the finalizers of lab custom objects in ``namespace``: their operator is gone, and a
    namespace whose objects keep finalizers stays Terminating forever."""
    extensions, custom = client.ApiextensionsV1Api(api), client.CustomObjectsApi(api)
    for crd in extensions.list_custom_resource_definition().items:
        if not crd.spec.group.endswith("opslab.dev") or crd.spec.scope != "Namespaced":
            continue
        for version in crd.spec.versions:
            if not version.served:
                continue
            args = (crd.spec.group, version.name, namespace, crd.spec.names.plural)
            with contextlib.suppress(ApiException):
                listing: dict[str, Any] = custom.list_namespaced_custom_object(*args)  # type: ignore[assignment]
                for item in listing["items"]:
                    if item["metadata"].get("finalizers"):
                        custom.patch_namespaced_custom_object(
                            *args, item["metadata"]["name"], {"metadata": {"finalizers": None}}
                        )
            break


def sweep(
    api: client.ApiClient,
    runs: set[str] | None = None,
    *,
    kafka: str | None = None,
    redis: str | None = None,
    sqs: str | None = None,
) -> list[str]:
    """Delete what the given runs created (``None``: every grading run's); return what was deleted."""
    selector = RUN_LABEL if runs is None else f"{RUN_LABEL} in ({','.join(sorted(runs))})"
    if runs is not None and not runs:
        return []
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    scheduling, extensions = client.SchedulingV1Api(api), client.ApiextensionsV1Api(api)
    admission = client.AdmissionregistrationV1Api(api)
    gone: list[str] = []
    kinds: list[tuple[str, Any, Any]] = [
        ("namespace", core.list_namespace, core.delete_namespace),
        ("node", core.list_node, core.delete_node),
        ("clusterrolebinding", rbac.list_cluster_role_binding, rbac.delete_cluster_role_binding),
        ("clusterrole", rbac.list_cluster_role, rbac.delete_cluster_role),
        ("priorityclass", scheduling.list_priority_class, scheduling.delete_priority_class),
        ("customresourcedefinition", extensions.list_custom_resource_definition,
         extensions.delete_custom_resource_definition),
        ("validatingadmissionpolicybinding", admission.list_validating_admission_policy_binding,
         admission.delete_validating_admission_policy_binding),
        ("validatingadmissionpolicy", admission.list_validating_admission_policy,
         admission.delete_validating_admission_policy),
    ]  # fmt: skip
    for kind, lister, deleter in kinds:
        try:
            items = lister(label_selector=selector).items
        except ApiException as exc:
            log.warning("cannot list %ss of grading runs: %s", kind, exc.reason)
            continue
        for obj in items:
            name = obj.metadata.name
            if kind == "namespace":
                with contextlib.suppress(ApiException):
                    _release_custom_objects(api, name)
            if obj.metadata.deletion_timestamp is not None:
                continue
            try:
                deleter(name)
                gone.append(f"{kind}/{name}")
            except ApiException as exc:
                if exc.status != 404:
                    log.warning("cannot delete %s/%s: %s", kind, name, exc.reason)
    if runs:
        # Namespaces a learner's program made for the run under a name the run confined it to
        # (``<run>-...``, e.g. Terraform's tenants in lab 7): they carry no label of the run.
        with contextlib.suppress(ApiException):
            for ns in core.list_namespace().items:
                meta = ns.metadata
                name = str(meta.name) if meta is not None else ""
                if any(name.startswith(f"{run}-") for run in runs) and meta is not None and not meta.deletion_timestamp:
                    with contextlib.suppress(ApiException):
                        core.delete_namespace(name)
                        gone.append(f"namespace/{name}")
    gone += _sweep_faults(api, selector)
    if kafka:
        gone += sweep_kafka(kafka, runs)
    if redis:
        gone += sweep_redis(redis, runs)
    if sqs:
        gone += sweep_sqs(sqs, runs)
    return gone


def _sweep_faults(api: client.ApiClient, selector: str) -> list[str]:
    """Delete the shop Faults grading runs created (lab 4 breaks fulfilment for its own ledgers)."""
    from opslab.shop.faults import GROUP, PLURAL, VERSION  # noqa: PLC0415 (only sweeps need it)

    custom, gone = client.CustomObjectsApi(api), []
    try:
        listing: Any = custom.list_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, label_selector=selector)
    except ApiException:
        return []  # no shop (or no Fault CRD) on this platform: nothing of ours there
    for item in listing.get("items", []):
        name = item["metadata"]["name"]
        with contextlib.suppress(ApiException):
            custom.delete_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, name)
            gone.append(f"fault/{name}")
    return gone


def sweep_kafka(bootstrap: str, runs: set[str] | None) -> list[str]:
    """Delete the topics and consumer groups of the given runs (``None``: of every grading run)."""
    from confluent_kafka import KafkaException  # noqa: PLC0415 (only sweeps need Kafka)
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    def ours(name: str) -> bool:
        run = _run_of_name(name)
        return bool(run) and (runs is None or run in runs)

    quiet = logging.getLogger("opslab.grading.kafka")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    settings: dict[str, Any] = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 3000, "logger": quiet}
    admin = AdminClient(settings)
    gone: list[str] = []
    try:
        groups = [g.group_id for g in admin.list_consumer_groups().result(10).valid if ours(g.group_id)]
        if groups:
            for group, future in admin.delete_consumer_groups(groups, request_timeout=10).items():
                with contextlib.suppress(KafkaException):
                    future.result(15)
                    gone.append(f"consumer-group/{group}")
        topics = [t for t in admin.list_topics(timeout=10).topics if ours(t)]
        if topics:
            for topic, future in admin.delete_topics(topics, operation_timeout=15).items():
                with contextlib.suppress(KafkaException):
                    future.result(20)
                    gone.append(f"topic/{topic}")
    except (KafkaException, TimeoutError) as exc:
        log.warning("cannot sweep Kafka of grading runs: %s", exc)
    return gone


def sweep_stale(
    api: client.ApiClient, *, kafka: str | None = None, redis: str | None = None, sqs: str | None = None
) -> list[str]:
    """Remove what grading runs whose grader is gone left behind; live runs are untouched.

    Each kind of thing is listed first and the live runs are read after it: a run that starts in
    between (its namespace, topics or keys made after a listing of live runs) would otherwise look
    stale and lose what it just made."""

    def live() -> set[str]:
        return live_runs(api)

    seen: set[str] = set()
    core = client.CoreV1Api(api)
    for lister in (core.list_namespace, core.list_node):
        with contextlib.suppress(ApiException):
            seen |= {_run_of(obj) for obj in lister(label_selector=RUN_LABEL).items}
    stale = {run for run in seen - live() if run}
    gone = sweep(api, stale) if stale else []
    if kafka:
        gone += _sweep_stale_kafka(kafka, live)
    if redis:
        gone += sweep_stale_redis(redis, live)
    if sqs:
        gone += sweep_stale_sqs(sqs, live)
    return gone


def _run_of_name(name: str) -> str:
    """The run id in a ``grading-<id>-...`` name (or a key ``grading-<id>-...:...``)."""
    return name[len(TOPIC_PREFIX) :].split("-", 1)[0] if name.startswith(TOPIC_PREFIX) else ""


def _grading_keys(url: str) -> list[str]:
    import redis as redis_client  # noqa: PLC0415 (only sweeps need Redis)

    try:
        connection = redis_client.Redis.from_url(url, socket_timeout=5)
        return [key.decode(errors="replace") for key in connection.scan_iter(match=f"{TOPIC_PREFIX}*", count=1000)]
    except redis_client.RedisError as exc:
        log.warning("cannot list the Redis keys of grading runs: %s", exc)
        return []


def sweep_redis(url: str, runs: set[str] | None) -> list[str]:
    """Delete the Redis keys (lab 4's streams) of the given runs (``None``: of every grading run)."""
    import redis as redis_client  # noqa: PLC0415

    ours = [key for key in _grading_keys(url) if _run_of_name(key) and (runs is None or _run_of_name(key) in runs)]
    gone = []
    try:
        connection = redis_client.Redis.from_url(url, socket_timeout=5)
        for key in ours:
            if connection.delete(key):
                gone.append(f"redis-key/{key}")
    except redis_client.RedisError as exc:
        log.warning("cannot sweep Redis of grading runs: %s", exc)
    return gone


def sweep_stale_redis(url: str, live: Callable[[], set[str]]) -> list[str]:
    """Delete the Redis keys of grading runs not ``live()`` once they are listed (their grader is gone)."""
    stale = {_run_of_name(key) for key in _grading_keys(url)} - live()
    stale = {run for run in stale if valid_run_id(run)}
    return sweep_redis(url, stale) if stale else []


def _sqs_client(url: str) -> Any:
    from botocore.config import Config  # noqa: PLC0415 (only sweeps need SQS)

    from opslab.runtime import sqs  # noqa: PLC0415

    return sqs.client(url, config=Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 1}))


def _grading_queues(url: str) -> dict[str, str]:
    """Queue name -> URL of every grading run's SQS queue (lab 4's queues and their DLQs)."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        urls = _sqs_client(url).list_queues(QueueNamePrefix=TOPIC_PREFIX).get("QueueUrls", [])
    except (BotoCoreError, ClientError) as exc:
        log.warning("cannot list the SQS queues of grading runs: %s", exc)
        return {}
    return {queue_url.rsplit("/", 1)[-1]: queue_url for queue_url in urls}


def sweep_sqs(url: str, runs: set[str] | None) -> list[str]:
    """Delete the SQS queues (lab 4's) of the given runs (``None``: of every grading run)."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    queues = _grading_queues(url).items()
    ours = {n: u for n, u in queues if _run_of_name(n) and (runs is None or _run_of_name(n) in runs)}
    gone = []
    if ours:
        sqs = _sqs_client(url)
        for name, queue_url in ours.items():
            try:
                sqs.delete_queue(QueueUrl=queue_url)
                gone.append(f"sqs-queue/{name}")
            except (BotoCoreError, ClientError) as exc:
                log.warning("cannot delete SQS queue %s: %s", name, exc)
    return gone


def sweep_stale_sqs(url: str, live: Callable[[], set[str]]) -> list[str]:
    """Delete the SQS queues of grading runs not ``live()`` once they are listed (their grader is gone)."""
    stale = {_run_of_name(name) for name in _grading_queues(url)} - live()
    stale = {run for run in stale if valid_run_id(run)}
    return sweep_sqs(url, stale) if stale else []


def _sweep_stale_kafka(bootstrap: str, live: Callable[[], set[str]]) -> list[str]:
    from confluent_kafka import KafkaException  # noqa: PLC0415
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 3000})
    try:
        names = list(admin.list_topics(timeout=10).topics)
        names += [g.group_id for g in admin.list_consumer_groups().result(10).valid]
    except (KafkaException, TimeoutError):
        return []
    runs = {_run_of_name(n) for n in names} - {""}
    stale = {r for r in runs - live() if valid_run_id(r)}
    return sweep_kafka(bootstrap, stale) if stale else []


def wait_gone(api: client.ApiClient, run_id: str, timeout: float = 60) -> bool:
    """Wait (bounded) until the run's namespaces are fully deleted."""
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not core.list_namespace(label_selector=f"{RUN_LABEL}={run_id}").items:
            return True
        time.sleep(0.5)
    return False
