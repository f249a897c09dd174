#!/usr/bin/env bash
# Runs Shepherd on this machine: the gateway on http://127.0.0.1:5000 and one
# worker per configured sheep, with
# the config given (default examples/configs/shepherd-bare.yml), the
# filesystem storage backend and the local Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-examples/configs/shepherd-bare.yml}
bash scripts/setup.sh
pnpm build --output-logs=errors-only
exec node scripts/local.mjs "$config"
