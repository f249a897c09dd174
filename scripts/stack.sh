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
# Secrets: the first command makes .shepherd.env (git-ignored, mode 600;
# SHEPHERD_ENV_FILE names another file): the API tokens (admin; submit and
# read), the Redis password, the S3 keys and the registry login, all random.
# Later commands reuse it and hand it to compose (--env-file). Beside it,
# .shepherd.htpasswd is the registry's login, made from the env file.
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
die() { echo "[stack] $*" >&2; exit 1; }

env_file=${SHEPHERD_ENV_FILE:-.shepherd.env}
case "$env_file" in /* | ./* | ../*) ;; *) env_file=./$env_file ;; esac
htpasswd_file=${env_file%.env}.htpasswd
source_env_file() { set -a; . "$env_file"; set +a; }

# Makes the env file on first use: random secrets, nothing a default could
# guess. The tokens are printed this once; later they are in the file.
make_env_file() {
  [ -e "$env_file" ] && return 0
  local secrets
  secrets=$(node -e '
    const { randomBytes, createHash } = require("node:crypto");
    const hex = (n) => randomBytes(n).toString("hex");
    const sha = (t) => createHash("sha256").update(t).digest("hex");
    const admin = hex(24), submit = hex(24);
    console.log([
      `SHEPHERD_ADMIN_TOKEN=${admin}`, `SHEPHERD_SUBMIT_TOKEN=${submit}`,
      `SHEPHERD_ADMIN_TOKEN_SHA256=${sha(admin)}`, `SHEPHERD_SUBMIT_TOKEN_SHA256=${sha(submit)}`,
      `SHEPHERD_REDIS_PASSWORD=${hex(24)}`,
      `SHEPHERD_S3_ACCESS_KEY=${hex(12)}`, `SHEPHERD_S3_SECRET_KEY=${hex(24)}`,
      "SHEPHERD_REGISTRY_USERNAME=shepherd", `SHEPHERD_REGISTRY_PASSWORD=${hex(24)}`,
    ].join("\n"));')
  (
    umask 077
    cat >"$env_file" <<END_OF_ENV_FILE
# Secrets of the Shepherd compose stack, made by scripts/stack.sh on its first
# start and reused by every later one. Keep it private (mode 600; git ignores
# .shepherd.env). A value changed here applies at the next scripts/stack.sh up.
#
# API tokens: send \`Authorization: Bearer <token>\`. The admin token may do
# everything and opens Bull Board (/admin/queues: Basic auth, any user name,
# the token as password); the submit token submits jobs and reads its own.
# The gateway's config holds only their SHA-256 (stack.sh keeps them in step).
$secrets
END_OF_ENV_FILE
  )
  chmod 600 "$env_file"
  source_env_file
  log "made $env_file (mode 600) with the stack's secrets; later starts reuse it"
  log "  admin token  (everything; Bull Board's password): $SHEPHERD_ADMIN_TOKEN"
  log "  submit token (submit jobs, read them):            $SHEPHERD_SUBMIT_TOKEN"
  log "use them from a shell:"
  log "  set -a; . $env_file; set +a"
  log "  curl -H \"Authorization: Bearer \$SHEPHERD_SUBMIT_TOKEN\" http://127.0.0.1:${SHEPHERD_PORT:-5000}/ready"
}

# Reads the env file (making it first if need be); keeps the token hashes in
# step with the tokens, so a token changed by hand applies, and the
# registry's htpasswd with the registry login.
load_env_file() {
  make_env_file
  source_env_file
  local name token_var hash_var token want
  for name in ADMIN SUBMIT; do
    token_var=SHEPHERD_${name}_TOKEN
    hash_var=SHEPHERD_${name}_TOKEN_SHA256
    token=${!token_var:-}
    [ ${#token} -ge 16 ] || die "$env_file: $token_var must be at least 16 characters"
    want=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
    if [ "${!hash_var:-}" != "$want" ]; then
      if grep -q "^$hash_var=" "$env_file"; then sed -i "s/^$hash_var=.*/$hash_var=$want/" "$env_file"; else echo "$hash_var=$want" >>"$env_file"; fi
      export "$hash_var=$want"
    fi
  done
  local user=${SHEPHERD_REGISTRY_USERNAME:-} password=${SHEPHERD_REGISTRY_PASSWORD:-}
  [ -n "$user" ] && [ -n "$password" ] || die "$env_file: SHEPHERD_REGISTRY_USERNAME and SHEPHERD_REGISTRY_PASSWORD must be set"
  command -v htpasswd >/dev/null || die "htpasswd makes the registry's login: apt-get install apache2-utils (scripts/setup.sh does)"
  # An empty directory is what `docker compose up` leaves where the file was missing.
  [ -d "$htpasswd_file" ] && rmdir "$htpasswd_file"
  if ! printf '%s' "$password" | htpasswd -vi "$htpasswd_file" "$user" >/dev/null 2>&1; then
    # Bcrypt, the only kind the registry takes; the password goes in on stdin, never on a command line.
    printf '%s' "$password" | htpasswd -niB "$user" | sed '/^$/d' >"$htpasswd_file.new"
    chmod 644 "$htpasswd_file.new"
    mv "$htpasswd_file.new" "$htpasswd_file"
  fi
  SHEPHERD_REGISTRY_HTPASSWD=$(cd "$(dirname "$htpasswd_file")" && pwd)/$(basename "$htpasswd_file")
  export SHEPHERD_REGISTRY_HTPASSWD
}

# docker compose (v2 plugin) where there is one, else Debian's docker-compose.
compose() {
  local files=(--env-file "$env_file" -f docker-compose.yml)
  [ -n "$local_images" ] && files+=(-f docker/compose.local.yml)
  if docker compose version >/dev/null 2>&1; then docker compose "${files[@]}" "$@"; else docker-compose "${files[@]}" "$@"; fi
}

case "$command" in
  up | build) ;;
  down) load_env_file; compose down "${rest[@]}"; exit ;;
  compose) load_env_file; compose "${rest[@]}"; exit ;;
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

load_env_file
compose up -d
gateway=http://127.0.0.1:${SHEPHERD_PORT:-5000}
registry=127.0.0.1:${SHEPHERD_REGISTRY_PORT:-5001}
# wait_for URL WHAT [AUTHORIZATION]: until URL answers 2xx, 180 s at most.
wait_for() {
  node -e '
    const [url, what, authorization] = process.argv.slice(1);
    const headers = authorization ? { authorization } : {};
    const deadline = Date.now() + 180_000;
    (async () => {
      let last = "no answer";
      while (Date.now() < deadline) {
        const status = await fetch(url, { headers, signal: AbortSignal.timeout(5000) }).then((r) => r.status, () => 0);
        if (status >= 200 && status < 300) return;
        if (status) last = `HTTP ${status}`;
        await new Promise((r) => setTimeout(r, 500));
      }
      console.error(`[stack] ${what} did not answer ${url} within 180 s (last: ${last})`);
      process.exit(1);
    })();' "$@"
}
wait_for "http://$registry/v2/" "the registry" \
  "Basic $(printf '%s:%s' "$SHEPHERD_REGISTRY_USERNAME" "$SHEPHERD_REGISTRY_PASSWORD" | base64 -w0)"
# The registry takes pushes with its login only; being logged in also lets
# you push your own models to it from this machine.
printf '%s' "$SHEPHERD_REGISTRY_PASSWORD" | docker login -u "$SHEPHERD_REGISTRY_USERNAME" --password-stdin "$registry" >/dev/null ||
  die "docker login to the stack's registry $registry failed"
docker tag shepherd/echo-runner:dev "$registry/echo:v1"
docker push -q "$registry/echo:v1" >/dev/null
wait_for "$gateway/ready" "the gateway" "Bearer $SHEPHERD_SUBMIT_TOKEN"
log "up: gateway $gateway (Bull Board $gateway/admin/queues: any user, the admin token as password), model echo:v1 in the registry $registry (docker is logged in to it)"
log "tokens and passwords are in $env_file; in a shell: set -a; . $env_file; set +a"
log "try: curl -XPOST $gateway/start-job -H \"Authorization: Bearer \$SHEPHERD_SUBMIT_TOKEN\" -H 'content-type: application/json' -d '{\"job_id\": \"job-1\", \"model\": {\"name\": \"echo\", \"version\": \"v1\"}, \"payload\": \"{}\"}'"
if [ -n "$follow" ]; then
  log "following the logs; Ctrl-C stops following, scripts/stack.sh down stops the stack"
  compose logs -f --tail 20 || true
fi
