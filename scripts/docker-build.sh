#!/usr/bin/env bash
# Builds the gateway and worker images, shepherd/gateway:dev and
# shepherd/worker:dev, and the example model image shepherd/echo-runner:dev
# from docker/Dockerfile (everything compiles inside, in one shared stage).
#   scripts/docker-build.sh                # FROM node:20-slim
#   scripts/docker-build.sh --local-base   # FROM an image made here from the host's node (no pull)
# The host's CA bundle goes in as the npm_ca build secret, so the build
# trusts what the host trusts (a TLS-intercepting proxy included).
set -euo pipefail
cd "$(dirname "$0")/.."

base=node:20-slim
if [ "${1:-}" = "--local-base" ]; then
  [ -d packages/testing/dist ] || pnpm --filter @shepherd/testing build >/dev/null
  base=$(node -e 'console.log(require("./packages/testing/dist").ensureNodeBaseImage())')
fi

# BuildKit (RUN --mount) is built into engines since 18.09; a newer CLI
# wants the buildx plugin for it, Debian's own CLI does not.
build=(docker build)
if ! docker buildx version >/dev/null 2>&1; then
  [ -x /usr/bin/docker ] && build=(/usr/bin/docker build)
fi
secret=()
ca=${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}
[ -f "$ca" ] && secret=(--secret "id=npm_ca,src=$ca")

for app in gateway worker echo-runner; do
  DOCKER_BUILDKIT=1 "${build[@]}" -q -f docker/Dockerfile --target "$app" \
    --build-arg BASE_IMAGE="$base" "${secret[@]}" -t "shepherd/$app:dev" . >/dev/null
  echo "built shepherd/$app:dev"
done
