#!/usr/bin/env bash
# Builds the gateway and worker images: shepherd/gateway:dev, shepherd/worker:dev.
#   scripts/docker-build.sh                # FROM node:20-slim
#   scripts/docker-build.sh --local-base   # FROM local/node-runtime:20, made here from the host's node (no pull)
set -euo pipefail
cd "$(dirname "$0")/.."
pnpm build --output-logs=errors-only
base=node:20-slim
if [ "${1:-}" = "--local-base" ]; then
  base=$(node -e 'console.log(require("./packages/testing/dist").ensureNodeBaseImage())')
fi
rm -rf docker/.build && mkdir -p docker/.build
for app in gateway worker; do
  pnpm --filter "@shepherd/$app" deploy --prod --legacy "docker/.build/$app" >/dev/null
  docker build -q -f docker/Dockerfile --build-arg APP="$app" --build-arg BASE_IMAGE="$base" -t "shepherd/$app:dev" docker/.build
done
