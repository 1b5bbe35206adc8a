#!/usr/bin/env bash
# The project's test command: formatting, lints, native tests (among them the
# web page end to end against three real servers, in headless Chromium), and
# the wasm client's tests in headless Chromium.  Run scripts/setup.sh once first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)
LAST=""
# Prints a step's heading, and how long the previous one took (CI logs show
# where the time goes).
step() {
  local now
  now=$(date +%s)
  [ -z "$LAST" ] || printf '[test] %d s (%d s in all)\n' $((now - LAST)) $((now - START))
  LAST=$now
  printf '\n=== %s ===\n' "$*"
}

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (workspace, all targets, -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "wasm package for the page (scripts/build-web.sh)"
bash scripts/build-web.sh

step "native tests (with the page end to end in headless Chromium: party-server/tests/browser_e2e.rs)"
cargo test --workspace

step "benchmark smoke run (bench-ops --quick)"
# Built with the tests' feature set, which reuses their build (a plain
# `cargo run --bin bench-ops` would resolve features anew and rebuild).
cargo build -q --workspace --tests --bins
target/debug/bench-ops --quick

step "benchmark report smoke run (scripts/bench.sh --quick: debug build, tiny sizes, target/bench-quick/)"
bash scripts/bench.sh --quick

step "wasm32 build of the shared crate"
(
  source scripts/wasm-env.sh
  /usr/bin/cargo build -p shared --target wasm32-unknown-unknown "${WASM_BUILD_STD[@]}"
)

step "browser tests (wasm-pack test --headless --chrome)"
(
  source scripts/wasm-env.sh
  cd client-wasm
  wasm-pack test --headless --chrome --mode no-install --chromedriver /usr/bin/chromedriver -- "${WASM_BUILD_STD[@]}"
)
step "all tests passed"
