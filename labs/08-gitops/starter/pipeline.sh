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

echo "pipeline.sh: TODO (README, task 2)" >&2
exit 1
