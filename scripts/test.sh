#!/usr/bin/env bash
# The test command of the README and of CI: sets the machine up, then runs
# every package's tests (real Redis, a real S3-protocol server, real HTTP).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pnpm test
