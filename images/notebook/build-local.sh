#!/usr/bin/env bash
# Build a working notebook image where no container registry is reachable:
# debootstrap a Debian 12 root, pip-install requirements.txt into a venv,
# `docker import` it. Prints the image's name on its last line.
#
# The image has the `lattice` client (clients/python, installed from its source) so
# `import lattice` works in JupyterLab and jobs (docs/notebooks.md).
#
# The tag is the hash of this script, requirements.txt, jupyter_server_config.py
# and README-lattice.md (inputs, in that order), then the client's pyproject.toml,
# README.md and source files (in path order), so the image is
# built once per change of its inputs; with LATTICE_IMAGE_CACHE set, the built
# image is also saved there and loaded from there on a machine that lacks it.
# Two builds of the same image on one host (make dev's and a test run's) take
# turns: the second waits on a lock (in a private directory: ../lib.sh), then
# finds the image built.
# Needs root (debootstrap, chroot), Docker, and Debian's mirror and PyPI.
# --print-name prints the name and builds nothing.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# The client's source beside images/ (apps.runtimes.images._client_inputs: the same files).
client="$here/../../clients/python"
inputs=(build-local.sh requirements.txt jupyter_server_config.py README-lattice.md)
client_files() {
  (cd "$client" && { echo pyproject.toml; echo README.md;
    find src -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' ! -name '*.pyc' \
      | LC_ALL=C sort; })
}
hash="$( { (cd "$here" && cat "${inputs[@]}");
  if [ -f "$client/pyproject.toml" ]; then client_files | (cd "$client" && xargs cat); fi; } \
  | sha256sum | cut -c1-16)"
image="lattice/notebook-local:$hash"
if [ "${1:-}" = --print-name ]; then
  echo "$image"
  exit 0
fi
mirror="${LATTICE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache="${LATTICE_IMAGE_CACHE:-}"

# shellcheck source=../lib.sh
. "$here/../lib.sh"
if lattice_image_ready "$image" "image-notebook-$hash" "${cache:+$cache/notebook-$hash.tar}" \
  "waiting for another build of $image..."; then
  echo "$image"
  exit 0
fi

command -v debootstrap >/dev/null || { apt-get update -q >&2; apt-get install -y -q debootstrap >&2; }
root="$(mktemp -d /tmp/lattice-notebook-root.XXXXXX)"
trap 'umount -l "$root/proc" 2>/dev/null || true; rm -rf "$root"' EXIT

echo "building $image (debootstrap, then pip)..." >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,tini,git,openssh-client \
  bookworm "$root" "$mirror" >&2
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "$here/requirements.txt" "$root/tmp/requirements.txt"
[ -f "$client/pyproject.toml" ] || { echo "the client's source ($client) is missing" >&2; exit 1; }
mkdir -p "$root/tmp/lattice-client"
client_files | (cd "$client" && xargs cp --parents -t "$root/tmp/lattice-client")
mount -t proc proc "$root/proc"
# A clean environment: the host's pip settings (indexes, constraints) stay outside.
in_root() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 chroot "$root" "$@"; }
in_root /usr/bin/python3 -m venv /opt/venv
in_root /opt/venv/bin/pip install -q --no-cache-dir --disable-pip-version-check \
  -r /tmp/requirements.txt >&2
in_root /opt/venv/bin/pip install -q --no-cache-dir --disable-pip-version-check \
  /tmp/lattice-client >&2
in_root /usr/sbin/useradd --uid 1000 --create-home --shell /bin/bash jovyan
mkdir -p "$root/notebooks" "$root/storage" "$root/datasets" "$root/workspace" "$root/outputs" \
  "$root/etc/jupyter" "$root/opt/lattice"
cp "$here/jupyter_server_config.py" "$root/etc/jupyter/jupyter_server_config.py"
cp "$here/README-lattice.md" "$root/opt/lattice/README.md"
# A job's volumes (/workspace, /outputs) take these folders' owner when Docker makes them.
chown 1000:1000 "$root/notebooks" "$root/storage" "$root/workspace" "$root/outputs"
umount -l "$root/proc"
rm -rf "$root/tmp/requirements.txt" "$root/tmp/lattice-client" "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
: > "$root/etc/resolv.conf"

tar -C "$root" -c . | docker import \
  --change 'USER 1000:1000' \
  --change 'WORKDIR /notebooks' \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 HOME=/home/jovyan' \
  --change 'EXPOSE 8888' \
  --change 'ENTRYPOINT ["/usr/bin/tini", "--"]' \
  --change 'CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--ServerApp.root_dir=/notebooks"]' \
  - "$image" >&2

if [ -n "$cache" ]; then
  mkdir -p "$cache"
  docker save -o "$cache/notebook-$hash.tar" "$image"
fi
echo "$image"
