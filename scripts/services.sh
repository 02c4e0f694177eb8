#!/usr/bin/env bash
# Install and start the real services the test suite uses: PostgreSQL, Redis,
# a Docker engine and Chromium. Debian 12, as root. Idempotent: safe to run
# again on a machine where some or all of them already run.
#
# Prints the environment to export for `make test` on its last lines.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
packages=(postgresql redis-server docker.io iproute2 iptables chromium fonts-dejavu-core busybox-static
  debootstrap make)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "services: installing ${missing[*]}" >&2
  apt-get update -q >&2
  # With recommends: docker.io's (cgroup tools, iptables helpers) are what was tested.
  apt-get install -y -q "${missing[@]}" >&2
fi

# PostgreSQL: the Debian cluster, a role and a database for the tests.
pg_version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q .; then
  pg_createcluster "$pg_version" main >&2
fi
# Room for the concurrency tests and bench/scheduler (100 placements at once).
conf="/etc/postgresql/$pg_version/main/postgresql.conf"
if ! grep -q "^max_connections = 300" "$conf"; then
  sed -i 's/^#\?max_connections = .*/max_connections = 300/' "$conf"
  pg_lsclusters -h | grep -q online && pg_ctlcluster "$pg_version" main restart >&2
fi
if ! pg_lsclusters -h | grep -q online; then
  pg_ctlcluster "$pg_version" main start >&2
fi
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='lattice'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE lattice LOGIN PASSWORD 'lattice' CREATEDB\"" >&2
su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='lattice'\"" | grep -q 1 \
  || su postgres -c "createdb -O lattice lattice" >&2

# Redis on loopback.
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes >&2
fi
for _ in $(seq 30); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.5; done

# Docker engine.
if ! docker info >/dev/null 2>&1; then
  mkdir -p /var/log/lattice
  nohup dockerd >/var/log/lattice/dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
docker info >/dev/null

# What the two-host tests' second Docker engine needs (tests/multihost.py starts it beside
# this one, and stops and removes it): dockerd and containerd (docker.io), `ip` for its bridge
# (iproute2), the kernel's bridge and overlay file system (built in, or modules).
for module in bridge overlay; do
  if [ ! -d "/sys/module/$module" ] && ! grep -qw "$module" /proc/filesystems; then
    modprobe "$module" 2>/dev/null || echo "services: no $module in this kernel" >&2
  fi
done

cat <<'ENV'
export DATABASE_URL=postgres://lattice:lattice@127.0.0.1:5432/lattice
export REDIS_URL=redis://127.0.0.1:6379/0
export LATTICE_CHROMIUM=/usr/bin/chromium
ENV
