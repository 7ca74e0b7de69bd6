#!/usr/bin/env bash
# promote.sh FROM TO: promote the release FROM runs to TO (dev -> staging -> prod), as a commit to
# the delivery repository, and only through the gate:
#   1. FROM is healthy: its web Kustomization is Ready at the revision Git has now, and its
#      Deployment runs exactly the pinned image with every replica available;
#   2. FROM's error budget is not burning: web_error_budget_burn_rate{window="1h"} for its
#      namespace, from Prometheus, is below BURN_LIMIT (no data is a refusal: unknown is not safe);
#   3. TO rendered with the release passes the policy (opa eval of policy/ on kubectl kustomize);
#   4. for prod, approvals/prod/<version>.yaml in the delivery repository names the same digest.
# It exits non-zero, with the reason, and commits nothing when a gate refuses.
#
# Environment (defaults fit `make up`): DELIVERY_REPO, NAMESPACE_PREFIX, OPSLAB_PROMETHEUS_URL,
# BURN_LIMIT, PYTHON, CRANE, OPA, KUBECTL.
set -euo pipefail

from=${1:?usage: promote.sh FROM TO (dev staging, or staging prod)}
to=${2:?usage: promote.sh FROM TO (dev staging, or staging prod)}
case "$from>$to" in
  "dev>staging" | "staging>prod") ;;
  *) echo "promote: $from -> $to is not a promotion: releases go dev -> staging -> prod, one step at a time" >&2; exit 2 ;;
esac
DELIVERY_REPO=${DELIVERY_REPO:-${OPSLAB_GIT_URL:?source .opslab/env first}/lab8/delivery.git}
NAMESPACE_PREFIX=${NAMESPACE_PREFIX:-lab8-}
PROMETHEUS=${OPSLAB_PROMETHEUS_URL:?source .opslab/env first}
BURN_LIMIT=${BURN_LIMIT:-1}
PYTHON=${PYTHON:-python3}
CRANE=${CRANE:-crane}
OPA=${OPA:-opa}
KUBECTL=${KUBECTL:-kubectl}
here=$(cd "$(dirname "$0")" && pwd)
git() { command git -c user.name=promote -c user.email=promote@opslab.invalid "$@"; }
refuse() { echo "promote: refused: $*" >&2; exit 1; }
namespace="$NAMESPACE_PREFIX$from"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q --branch main "$DELIVERY_REPO" "$work/delivery"
cd "$work/delivery"
image=$("$PYTHON" - "overlays/$from/kustomization.yaml" <<'PY'
import sys

import yaml

for entry in yaml.safe_load(open(sys.argv[1])).get("images", []):
    if entry.get("name") == "web" and entry.get("digest"):
        print(f"{entry['newName']}@{entry['digest']}")
PY
)
[ -n "$image" ] || refuse "overlays/$from pins no web image by digest"
digest=${image#*@}
version=$("$CRANE" config --insecure "$image" | "$PYTHON" -c \
  'import json,sys; print(json.load(sys.stdin)["config"].get("Labels", {}).get("org.opencontainers.image.version", ""))')
[ -n "$version" ] || refuse "$image has no org.opencontainers.image.version label: was it built by pipeline.sh?"
echo "promote: web $version ($digest) from $from to $to"

# 1. health, at the revision Git has now
head=$(git rev-parse HEAD)
status=$("$KUBECTL" -n "$namespace" get kustomization web -o json)
"$PYTHON" - "$head" "$status" <<'PY' || exit 1
import json
import sys

head, status = sys.argv[1], json.loads(sys.argv[2])["status"]
ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
applied = status.get("lastAppliedRevision", "")
if ready.get("status") != "True":
    sys.exit(f"promote: refused: Kustomization web is not Ready: {ready.get('message', 'no condition yet')}")
if not applied.endswith(head):
    sys.exit(f"promote: refused: {applied or 'nothing'} is applied, Git has {head}: wait for the reconciler")
PY
deployment=$("$KUBECTL" -n "$namespace" get deployment web -o json)
"$PYTHON" - "$image" "$deployment" <<'PY' || exit 1
import json
import sys

image, deployment = sys.argv[1], json.loads(sys.argv[2])
running = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
status, wanted = deployment.get("status", {}), deployment["spec"].get("replicas", 1)
if running != [image]:
    sys.exit(f"promote: refused: Deployment web runs {running}, not {image}")
if status.get("updatedReplicas", 0) < wanted or status.get("availableReplicas", 0) < wanted:
    sys.exit(f"promote: refused: Deployment web has {status.get('availableReplicas', 0)}/{wanted} replicas available")
PY

# 2. the error budget
query="max(web_error_budget_burn_rate{namespace=\"$namespace\",window=\"1h\"})"
answer=$(command curl -fsS --max-time 10 --get "$PROMETHEUS/api/v1/query" --data-urlencode "query=$query")
"$PYTHON" - "$answer" "$BURN_LIMIT" "$query" <<'PY' || exit 1
import json
import sys

result, limit, query = json.loads(sys.argv[1])["data"]["result"], float(sys.argv[2]), sys.argv[3]
if not result:
    sys.exit(f"promote: refused: no burn rate for the environment ({query}): an unknown SLO is not a safe one")
burn = float(result[0]["value"][1])
if burn >= limit:
    sys.exit(f"promote: refused: the error budget burns {burn:g}x (limit {limit:g}x)")
print(f"promote: burn rate {burn:g}x (limit {limit:g}x)")
PY

# 3. the policy, on what TO would run
"$PYTHON" - "overlays/$to/kustomization.yaml" "${image%@*}" "$digest" <<'PY'
import sys

import yaml

path, name, digest = sys.argv[1:]
overlay = yaml.safe_load(open(path))
images = [i for i in overlay.get("images", []) if i.get("name") != "web"]
overlay["images"] = [*images, {"name": "web", "newName": name, "digest": digest}]
open(path, "w").write(yaml.safe_dump(overlay, sort_keys=False))
PY
"$KUBECTL" kustomize "overlays/$to" | "$PYTHON" -c 'import json,sys,yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))' > "$work/rendered.json"
denied=$("$OPA" eval --format raw -d "$here/policy" -i "$work/rendered.json" 'concat("\n", sort(data.delivery.deny))')
[ -z "$denied" ] || refuse "the policy denies overlays/$to: $denied"

# 4. prod needs a human's approval of this very release
if [ "$to" = prod ]; then
  approval="approvals/prod/$version.yaml"
  [ -f "$approval" ] || refuse "$approval is missing: a human approves each prod release (approved_by, digest)"
  grep -q "$digest" "$approval" || refuse "$approval approves another digest than $digest"
fi

git commit -qam "promote($to): web $version from $from

image: $image"
git push -q origin HEAD:main
echo "promote: $to now runs web $version"
