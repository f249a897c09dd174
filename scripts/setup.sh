#!/usr/bin/env bash
# Installs and starts what Shepherd and its tests need on this machine, and
# nothing that is already there: pnpm at the pinned version, the
# dependencies from the frozen lockfile, Debian's python3-zmq (Python
# runners), a Docker engine with a local registry and Compose (docker sheep
# tests, the stack), a Redis on 127.0.0.1:6379.
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[setup] $*"; }

apt_install() {
  if [ ! -f /tmp/.shepherd-apt-updated ]; then
    apt-get update -qq && touch /tmp/.shepherd-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

want_pnpm=$(node -p 'require("./package.json").packageManager.split("@")[1]')
if [ "$(pnpm -v 2>/dev/null || true)" != "$want_pnpm" ]; then
  log "installing pnpm $want_pnpm"
  npm install -g --silent "pnpm@$want_pnpm"
fi

log "installing dependencies"
pnpm install --frozen-lockfile --reporter=silent

# Python runner tests use Debian's pyzmq with the system python.
if ! /usr/bin/python3 -c 'import zmq' >/dev/null 2>&1; then
  log "installing python3-zmq"
  apt_install python3-zmq
fi
# setpriv --pdeathsig makes runners die with their worker.
command -v setpriv >/dev/null || apt_install util-linux

# Docker sheep tests need a real engine, a local registry (Debian's
# docker-registry) and htpasswd for its basic auth.
command -v dockerd >/dev/null || { log "installing docker.io"; apt_install docker.io; }
command -v docker-registry >/dev/null || { log "installing docker-registry"; apt_install docker-registry; }
command -v htpasswd >/dev/null || apt_install apache2-utils
# The stack: docker-compose (Compose v1, Debian's) where the CLI has no
# `docker compose`; a static busybox for the shell of the node base image
# made here (packages/testing/src/docker.ts).
if ! docker compose version >/dev/null 2>&1; then
  command -v docker-compose >/dev/null || { log "installing docker-compose"; apt_install docker-compose; }
fi
[ -x /usr/bin/busybox ] || apt_install busybox-static
# The Kubernetes manifests are rendered with kubectl's kustomize in the tests (no cluster needed).
command -v kubectl >/dev/null || { log "installing kubectl"; apt_install kubectl; }
if ! docker version >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log
  (dockerd >/var/log/shepherd-dockerd.log 2>&1 &)
  for _ in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
  docker version >/dev/null 2>&1 || { echo "[setup] dockerd did not start: see /var/log/shepherd-dockerd.log" >&2; exit 1; }
fi

if ! command -v redis-server >/dev/null; then
  log "installing redis-server"
  apt_install redis-server
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting redis on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/shepherd.log
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
