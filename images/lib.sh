# Shared by notebook/build-local.sh and build-template.sh (sourced, not run): find an image
# built, or take this host's lock on its build, so two builds of one image take turns.
#
# The lock lives in a directory only this user can write (LATTICE_LOCK_DIR, default
# /run/lattice for root, else $XDG_RUNTIME_DIR/lattice or ~/.cache/lattice; made 0700), never
# in /tmp, where anyone could plant the lock file (or a symlink in its place) first. A build
# waits at most LATTICE_BUILD_LOCK_WAIT seconds (default 1800) for another build of the same
# image, then fails saying so.

lattice_lock_dir() {
  local dir="${LATTICE_LOCK_DIR:-}"
  if [ -z "$dir" ]; then
    if [ "$(id -u)" = 0 ]; then
      dir=/run/lattice
    else
      dir="${XDG_RUNTIME_DIR:-$HOME/.cache}/lattice"
    fi
  fi
  (umask 077 && mkdir -p "$dir")
  # Ours alone: a real directory (not a link to one), owned by us, writable by no one else.
  if [ -L "$dir" ] || [ ! -d "$dir" ] || [ ! -O "$dir" ] \
    || [ -n "$(find "$dir" -maxdepth 0 -perm /022)" ]; then
    echo "[lattice] the lock directory $dir is not private to $(id -un) (a real directory," \
      "owned by it, writable by no one else): not building" >&2
    exit 77
  fi
  echo "$dir"
}

# lattice_image_ready IMAGE LOCK_NAME CACHE_TAR WAITING_LINE
# True (status 0) when IMAGE is on this host, or was loaded from CACHE_TAR ("" for none); else
# false (1), holding the build's lock on fd 9 until the script ends: the caller builds it.
lattice_image_ready() {
  local image="$1" lock_name="$2" tar="$3" waiting="$4" wait="${LATTICE_BUILD_LOCK_WAIT:-1800}"
  local lock
  if docker image inspect "$image" >/dev/null 2>&1; then
    return 0
  fi
  # (Its own refusal ends only the $(...): end the script too.)
  lock="$(lattice_lock_dir)/$lock_name.lock" || exit 77
  exec 9>"$lock"
  if ! flock -n 9; then
    echo "$waiting" >&2
    if ! flock -w "$wait" 9; then
      echo "[lattice] gave up after ${wait}s waiting for another build of $image" \
        "(it holds $lock): try again later, or end that build" >&2
      exit 75
    fi
  fi
  # Built (or being built) by whoever held the lock.
  if docker image inspect "$image" >/dev/null 2>&1; then
    return 0
  fi
  if [ -n "$tar" ] && [ -f "$tar" ]; then
    docker load -q -i "$tar" >&2 || exit 1
    return 0
  fi
  return 1
}
