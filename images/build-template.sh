#!/usr/bin/env bash
# Build a template's notebook image where no container registry is reachable:
# images/<template>/Dockerfile.local on top of the local notebook image
# (notebook/build-local.sh, built first if missing), then a check that the
# template's frameworks import (images/<template>/check.py, run without network).
# Prints the image's name on its last line.
#
#   images/build-template.sh [--print-name] scipy|pytorch|tensorflow|r
#
# The tag is the hash of the notebook image's name and the template's local
# inputs (the plain files of images/<template>/, not its folders, links or
# dotfiles (an editor's .swp), nor the production Dockerfile; sorted bytewise),
# as apps.runtimes.images computes it: built once per change of either.
# --print-name prints the name and builds nothing.
# Two builds of one image on this host take turns (a lock, in a private
# directory: lib.sh): the second waits, then finds it built; after
# LATTICE_BUILD_LOCK_WAIT seconds (default 1800) it gives up, saying so. With
# LATTICE_IMAGE_CACHE set, the image is also saved there and loaded from there
# where missing. For PyTorch, a CPU wheel in
# LATTICE_WHEELS (default /opt/wheels: torch-*+cpu-*.whl) is used when there is
# one, else PyTorch's CPU index. Progress goes to stderr as
# "[lattice] step N of 3: ..." lines, which the Docker runtime shows on the
# notebook's page. Needs Docker (and root the first time, for the base image).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
print_name=
if [ "${1:-}" = --print-name ]; then print_name=1; shift; fi
template="${1:?usage: build-template.sh [--print-name] TEMPLATE}"
dir="$here/$template"
[ -f "$dir/Dockerfile.local" ] || { echo "no local build for template $template" >&2; exit 2; }
cache="${LATTICE_IMAGE_CACHE:-}"
wheels="${LATTICE_WHEELS:-/opt/wheels}"
step() { echo "[lattice] step $1 of 3: $2" >&2; }

# The same rule as apps.runtimes.images._template_inputs.
mapfile -t inputs < <(cd "$dir" && find . -maxdepth 1 -type f ! -name '.*' ! -name Dockerfile \
  -printf '%f\n' | LC_ALL=C sort)
if [ -n "$print_name" ]; then
  base="$(bash "$here/notebook/build-local.sh" --print-name)"
else
  step 1 "the base image"
  base="$(bash "$here/notebook/build-local.sh" | tail -n1)"
fi
hash="$( { printf '%s\n' "$base"; (cd "$dir" && cat "${inputs[@]}"); } | sha256sum | cut -c1-16)"
image="lattice/notebook-$template-local:$hash"
if [ -n "$print_name" ]; then
  echo "$image"
  exit 0
fi

# shellcheck source=lib.sh
. "$here/lib.sh"
if lattice_image_ready "$image" "image-$template-$hash" "${cache:+$cache/notebook-$template-$hash.tar}" \
  "[lattice] waiting: this image is being built for another notebook"; then
  echo "$image"
  exit 0
fi

context="$(mktemp -d /tmp/lattice-template-context.XXXXXX)"
trap 'rm -rf "$context"' EXIT
(cd "$dir" && cp "${inputs[@]}" "$context/")
mv "$context/Dockerfile.local" "$context/Dockerfile"
mkdir "$context/wheels"
if [ "$template" = pytorch ]; then
  for wheel in "$wheels"/torch-*+cpu-cp311-*.whl; do
    [ -f "$wheel" ] || continue
    cp -l "$wheel" "$context/wheels/" 2>/dev/null || cp "$wheel" "$context/wheels/"
  done
fi

step 2 "installing packages"
docker build --pull=false --build-arg "BASE=$base" \
  --label lattice.image=template --label "lattice.template=$template" \
  -t "$image-unchecked" "$context" >&2

step 3 "checking the image"
docker run --rm -i --network none --entrypoint python "$image-unchecked" - <"$dir/check.py" >&2
docker tag "$image-unchecked" "$image"
docker rmi "$image-unchecked" >/dev/null

if [ -n "$cache" ]; then
  mkdir -p "$cache"
  docker save -o "$cache/notebook-$template-$hash.tar" "$image"
fi
echo "$image"
