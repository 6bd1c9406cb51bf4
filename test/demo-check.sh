#!/usr/bin/env bash
# The flash-sale demo in short mode, as run by test/run-tests.sh (as user
# postgres, pacelc already installed where PG_CONFIG points).  Passes when
# every round's invariants hold: rounds 3 and 5 never oversell, round 4 with
# the token reads no stale order, verify() is clean, the stock reconciles.
# Asserts invariants, not numbers.  Takes well under a minute.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${PACELC_DEMO_PORT:-55620} timeout 120 bash "$ROOT/demo/flash-sale.sh" --short
