#!/usr/bin/env bash
# Build the built-in model server's image where no container registry is reachable:
# Dockerfile.local (serve.py) on top of the local scipy template's image (numpy,
# scikit-learn, joblib; built first by ../build-template.sh if missing), then a check
# that it imports them and serve.py runs (check.py, without network). Prints the
# image's name on its last line.
#
#   images/model-server/build-local.sh [--print-name]
#
# The tag is the hash of the scipy image's name and this folder's plain files (not its
# folders, links or dotfiles, nor the production Dockerfile; sorted bytewise), as
# apps.runtimes.images.local_model_server_image computes it: built once per change of
# either. --print-name prints the name and builds nothing. Two builds on one host take
# turns (../lib.sh's lock); with LATTICE_IMAGE_CACHE set, the image is also saved there
# and loaded from there where missing. Progress goes to stderr as
# "[lattice] step N of 3: ..." lines (the scipy build's own lines are indented), which
# the Docker runtime shows as the start's progress. Needs Docker (and root the first
# time, for the notebook image under the scipy one).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
images="$(dirname "$here")"
print_name=
if [ "${1:-}" = --print-name ]; then print_name=1; fi
cache="${LATTICE_IMAGE_CACHE:-}"
step() { echo "[lattice] step $1 of 3: $2" >&2; }

# The same rule as apps.runtimes.images._template_inputs.
mapfile -t inputs < <(cd "$here" && find . -maxdepth 1 -type f ! -name '.*' ! -name Dockerfile \
  -printf '%f\n' | LC_ALL=C sort)
if [ -n "$print_name" ]; then
  base="$(bash "$images/build-template.sh" --print-name scipy)"
else
  step 1 "the base image"
  # Its own step lines, indented: they are not this build's steps.
  base="$( { bash "$images/build-template.sh" scipy 2>&1 1>&3 | sed 's/^/  /' >&2; } 3>&1 | tail -n1)"
fi
hash="$( { printf '%s\n' "$base"; (cd "$here" && cat "${inputs[@]}"); } | sha256sum | cut -c1-16)"
image="lattice/model-server-local:$hash"
if [ -n "$print_name" ]; then
  echo "$image"
  exit 0
fi

# shellcheck source=../lib.sh
. "$images/lib.sh"
if lattice_image_ready "$image" "image-model-server-$hash" \
  "${cache:+$cache/model-server-$hash.tar}" \
  "[lattice] waiting: this image is being built for another start"; then
  echo "$image"
  exit 0
fi

context="$(mktemp -d /tmp/lattice-model-server-context.XXXXXX)"
trap 'rm -rf "$context"' EXIT
(cd "$here" && cp "${inputs[@]}" "$context/")
mv "$context/Dockerfile.local" "$context/Dockerfile"

step 2 "installing packages"
docker build --pull=false --build-arg "BASE=$base" \
  --label lattice.image=model-server \
  -t "$image-unchecked" "$context" >&2

step 3 "checking the image"
docker run --rm -i --network none --entrypoint python3 "$image-unchecked" - <"$here/check.py" >&2
docker tag "$image-unchecked" "$image"
docker rmi "$image-unchecked" >/dev/null

if [ -n "$cache" ]; then
  mkdir -p "$cache"
  docker save -o "$cache/model-server-$hash.tar" "$image"
fi
echo "$image"
