#!/usr/bin/env bash
# pipeline.sh: the app's delivery pipeline, run on every push to the app repository (its
# post-receive hook feeds it the pushed refs on stdin: "<old> <new> <ref>" per line).
#
#   test -> version (semantic-release, from the commits) -> build and push the image (crane) ->
#   pin dev to the image's digest in the delivery repository
#
# A push with no release-worthy commit (only chore:, docs:, ...) releases nothing. The image is
# pushed under its version tag, but dev is pinned by digest: a tag can move, a digest cannot.
#
# Environment (defaults fit `make up`): APP_REPO, DELIVERY_REPO, IMAGE, PYTHON, CRANE.
set -euo pipefail

APP_REPO=${APP_REPO:-${OPSLAB_GIT_URL:?source .opslab/env first}/lab8/app.git}
DELIVERY_REPO=${DELIVERY_REPO:-${OPSLAB_GIT_URL}/lab8/delivery.git}
IMAGE=${IMAGE:-${OPSLAB_REGISTRY:?source .opslab/env first}/lab8/web}
PYTHON=${PYTHON:-python3}
CRANE=${CRANE:-crane}
git() { command git -c user.name=pipeline -c user.email=pipeline@opslab.invalid "$@"; }

pushed=""
while read -r _old new ref; do
  if [ "$ref" = refs/heads/main ]; then pushed=$new; fi
done
if [ -z "$pushed" ] || [ "$pushed" = 0000000000000000000000000000000000000000 ]; then
  echo "pipeline: nothing pushed to main; nothing to do"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q --branch main "$APP_REPO" "$work/app"
cd "$work/app"
git reset -q --hard "$pushed"   # the commit that was pushed, even if main moved on since

echo "pipeline: test $pushed"
"$PYTHON" -m pytest -q -p no:cacheprovider tests

version=$("$PYTHON" -m semantic_release version --print 2>/dev/null | tail -n 1)
if [ -z "$version" ]; then
  echo "pipeline: semantic-release found no version" >&2
  exit 1
fi
if git rev-parse -q --verify "refs/tags/v$version" >/dev/null; then
  echo "pipeline: no release-worthy commit since v$version (fix:, feat: or a breaking change); nothing released"
  exit 0
fi

echo "pipeline: build $IMAGE:$version"
tar -C src -cf "$work/layer.tar" .
built=$("$CRANE" append --insecure --new_layer "$work/layer.tar" --new_tag "$IMAGE:$version")
pinned=$("$CRANE" mutate --insecure "$built" --tag "$IMAGE:$version" \
  --label "org.opencontainers.image.version=$version" --label "org.opencontainers.image.revision=$pushed")
digest=${pinned#*@}
git tag -a "v$version" -m "web $version: $IMAGE@$digest"
git push -q origin "v$version"

echo "pipeline: dev runs $IMAGE@$digest"
git clone -q --branch main "$DELIVERY_REPO" "$work/delivery"
cd "$work/delivery"
"$PYTHON" - overlays/dev/kustomization.yaml "$IMAGE" "$digest" <<'PY'
import sys

import yaml

path, name, digest = sys.argv[1:]
overlay = yaml.safe_load(open(path))
images = [i for i in overlay.get("images", []) if i.get("name") != "web"]
overlay["images"] = [*images, {"name": "web", "newName": name, "digest": digest}]
open(path, "w").write(yaml.safe_dump(overlay, sort_keys=False))
PY
git commit -qam "release(dev): web $version

image: $IMAGE@$digest
source: $pushed"
git push -q origin HEAD:main
echo "pipeline: released web $version to dev"
