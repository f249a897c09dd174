#!/usr/bin/env bash
# The whole stack with Docker Compose: Redis, MinIO, a registry, the gateway
# (http://127.0.0.1:5000, Bull Board at /admin/queues) and a CPU worker.
#   scripts/stack.sh up [--local] [--no-follow]   build, start, push the example model, follow the logs
#   scripts/stack.sh build [--local]              only build the images
#   scripts/stack.sh down [ARGS...]               `compose down ARGS` (-v also drops the data)
#   scripts/stack.sh compose [--local] ARGS...    any compose command on the stack's files
# `up` is `docker compose up --build -d`, then the example echo runner is
# pushed to the stack's registry as echo:v1 so a first job can run, then the
# logs are followed: Ctrl-C stops following, the stack keeps running.
# Where Docker Hub is out of reach (or with --local), the images are built
# FROM a node base made from this host, and Redis, MinIO and the registry
# are local stand-ins (docker/compose.local.yml). COMPOSE_PROFILES=gpu adds
# the GPU workers; COMPOSE_PROJECT_NAME and the SHEPHERD_*_PORT variables of
# docker-compose.yml move the stack aside.
set -euo pipefail
cd "$(dirname "$0")/.."

command=${1:-up}
shift || true
local_images=
follow=1
rest=()
for arg in "$@"; do
  case "$arg" in
    --local) local_images=1 ;;
    --no-follow) follow= ;;
    *) rest+=("$arg") ;;
  esac
done

log() { echo "[stack] $*"; }

# docker compose (v2 plugin) where there is one, else Debian's docker-compose.
compose() {
  local files=(-f docker-compose.yml)
  [ -n "$local_images" ] && files+=(-f docker/compose.local.yml)
  if docker compose version >/dev/null 2>&1; then docker compose "${files[@]}" "$@"; else docker-compose "${files[@]}" "$@"; fi
}

case "$command" in
  up | build) ;;
  down) compose down "${rest[@]}"; exit ;;
  compose) compose "${rest[@]}"; exit ;;
  *) echo "usage: scripts/stack.sh up|build|down|compose [--local] [--no-follow] [ARGS...]" >&2; exit 2 ;;
esac

bash scripts/setup.sh
if [ -z "$local_images" ] && ! docker pull -q node:20-slim >/dev/null 2>&1; then
  log "Docker Hub is out of reach: building FROM a local node base, with local stand-ins for Redis, MinIO and the registry"
  local_images=1
fi
if [ -n "$local_images" ]; then
  pnpm --filter @shepherd/testing build >/dev/null
  node -e 'require("./packages/testing/dist").buildStandInImages()'
  bash scripts/docker-build.sh --local-base
else
  bash scripts/docker-build.sh
fi
[ "$command" = build ] && exit 0

compose up -d
gateway=http://127.0.0.1:${SHEPHERD_PORT:-5000}
registry=127.0.0.1:${SHEPHERD_REGISTRY_PORT:-5001}
wait_for() {
  node -e '
    const [url, what] = process.argv.slice(1);
    const deadline = Date.now() + 180_000;
    (async () => {
      while (Date.now() < deadline) {
        const ok = await fetch(url, { signal: AbortSignal.timeout(5000) }).then((r) => r.ok, () => false);
        if (ok) return;
        await new Promise((r) => setTimeout(r, 500));
      }
      console.error(`[stack] ${what} did not answer ${url} within 180 s`);
      process.exit(1);
    })();' "$1" "$2"
}
wait_for "http://$registry/v2/" "the registry"
docker tag shepherd/echo-runner:dev "$registry/echo:v1"
docker push -q "$registry/echo:v1" >/dev/null
wait_for "$gateway/ready" "the gateway"
log "up: gateway $gateway (Bull Board $gateway/admin/queues), model echo:v1 in the registry $registry"
log "try: curl -XPOST $gateway/start-job -H 'content-type: application/json' -d '{\"job_id\": \"job-1\", \"model\": {\"name\": \"echo\", \"version\": \"v1\"}, \"payload\": \"{}\"}'"
if [ -n "$follow" ]; then
  log "following the logs; Ctrl-C stops following, scripts/stack.sh down stops the stack"
  compose logs -f --tail 20 || true
fi
