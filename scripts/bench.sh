#!/usr/bin/env bash
# The benchmark report: docs/BENCHMARKS.md and docs/images/bench-*.png, every
# number measured side by side in one run (party-server/bench, bench-report).
#
#   scripts/bench.sh            full run: release build, writes docs/ (hours on 2 cores)
#   scripts/bench.sh --quick    smoke run for the test command: debug build, tiny
#                               step and sample counts, written to target/bench-quick/
#
# Extra arguments go to bench-report (e.g. --quality-n 200).  The full run also
# compares the in-process LAN shaper with scripts/lan.sh (real servers in network
# namespaces, rate-shaped) when it runs as root with ip and tc; BENCH_LAN_SH=0
# skips that, LAN_STEPS (50) sets its DDIM step count.  The MNIST data must be
# in data/ (scripts/fetch-data.sh) for the quality table; without it the table
# says so.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BINS=(-p party-server -p train -p bench --bin bench-sample --bin eval-quality --bin bench-report)

if [ "${1:-}" = "--quick" ]; then
  shift
  # The feature set of `cargo test --workspace` (all members, dev-dependencies
  # on), so that after the test command this builds only bench-report.
  cargo build -q --workspace --tests --bins
  exec target/debug/bench-report --quick --out target/bench-quick "$@"
fi

cargo build -q --release "${BINS[@]}" --bin party-server --bin cipherdm
lan_args=()
if [ "${BENCH_LAN_SH:-1}" = 1 ] && [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v tc >/dev/null; then
  steps="${LAN_STEPS:-50}"
  mkdir -p target/bench
  # No delay: the shaper is compared with lan.sh at the rate alone, which is
  # all that lan.sh can emulate on a kernel without netem.
  if LAN_DIR="$ROOT/target/bench/lan" DELAY=0us bash scripts/lan.sh all "$steps" >target/bench/lan-sh.json; then
    lan_args=(--lan-sh-json target/bench/lan-sh.json --lan-sh-steps "$steps")
  else
    echo "scripts/lan.sh failed: the report says the comparison was not run" >&2
  fi
fi
exec target/release/bench-report "${lan_args[@]}" "$@"
