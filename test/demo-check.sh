#!/usr/bin/env bash
# The flash-sale demo in short mode, as run by test/run-tests.sh (as user
# postgres, pacelc already installed where PG_CONFIG points).  Passes when
# every round's invariants hold: rounds 3 and 5 never oversell, round 4 with
# the token reads no stale order, verify() is clean, the stock reconciles.
# Asserts invariants, not numbers.  Takes well under a minute.  Round 5's
# holds get a 3 s ttl instead of the short mode's 1 s: a buyer confirms right
# after reserving, and a busy machine can stall a client for a second, which
# would make that confirm come after the ttl (PC003, counted as an error).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${PACELC_DEMO_PORT:-55620} timeout 120 bash "$ROOT/demo/flash-sale.sh" --short --ttl 3
