#!/usr/bin/env bash
# The test command of the README and of CI: sets the machine up, typechecks
# and lints every package, runs every package's tests (real Redis, a real
# S3-protocol server, a real Docker engine, real HTTP), checks the compose files, then runs the compose stack
# end to end on the engine (scripts/stack-e2e.mjs, ~2 min).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pnpm typecheck --output-logs=errors-only
pnpm lint --output-logs=errors-only
pnpm test
node scripts/check-kubernetes.mjs

bash scripts/stack.sh compose config -q
COMPOSE_PROFILES=gpu bash scripts/stack.sh compose --local config -q
echo "compose files: valid"
node scripts/stack-e2e.mjs
