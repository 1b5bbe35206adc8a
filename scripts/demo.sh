#!/usr/bin/env bash
# The whole product on one machine: three party servers on loopback holding
# the committed model as shares, and the web page that talks to them.
#
#   scripts/demo.sh          then open the URL it prints; Ctrl-C stops everything
#
# On a fresh clone it installs what is missing (scripts/setup.sh, only if the
# wasm toolchain is absent), builds the release binaries and the wasm package,
# deals the models to a fresh cluster in runs/demo (new credentials every
# run), starts the servers and serves the page.
# Environment: PAGE_ADDR (127.0.0.1:8000), BASE_PORT (7100: the servers use
# 7100-7102 for browsers and 7110-7112 between themselves).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PAGE_ADDR="${PAGE_ADDR:-127.0.0.1:8000}"
export CLUSTER_DIR="$ROOT/runs/demo" BASE_PORT="${BASE_PORT:-7100}" PROFILE=release
say() { printf '[demo] %s\n' "$*"; }

# 1. Tools: Debian's rustc with the wasm32 std sources, its linker, and
#    wasm-bindgen at the version in Cargo.lock (what build-web.sh needs).
export PATH="$HOME/.cargo/bin:$PATH"
wb_version="$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)"
if ! { /usr/bin/rustc --print target-list 2>/dev/null | grep -qx wasm32-unknown-unknown \
  && [ -f /usr/lib/rustlib/src/rust/library/Cargo.lock ] \
  && /usr/bin/rust-lld -flavor wasm --version >/dev/null 2>&1 \
  && wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $wb_version"; }; then
  say "the wasm toolchain is incomplete; running scripts/setup.sh"
  bash scripts/setup.sh
fi

# 2. Build: the servers and the native client (release), the wasm package.
say "building the party server and cipherdm (release)"
cargo build -q --release -p party-server --bin party-server --bin cipherdm
say "building the browser client"
bash scripts/build-web.sh

# 3. A fresh cluster with the committed models (the page offers "mnist"
#    first when it exists).
scripts/cluster.sh stop >/dev/null
rm -rf "$CLUSTER_DIR"
models=()
for m in mnist cipherdm-tiny-silu; do
  if [ -f "party-server/models/$m/model.safetensors" ]; then models+=("$m"); fi
done
say "dealing ${models[*]} to three parties in $CLUSTER_DIR"
if ! out="$(scripts/cluster.sh init "${models[@]}" 2>&1)"; then
  printf '%s\n' "$out" >&2
  exit 1
fi

stop() {
  trap - EXIT INT TERM
  set +e
  say "stopping"
  if [ -n "${page_pid:-}" ]; then
    kill "$page_pid" 2>/dev/null
    wait "$page_pid" 2>/dev/null
  fi
  scripts/cluster.sh stop
}
trap stop EXIT
trap 'exit 130' INT TERM

scripts/cluster.sh start >/dev/null
say "three party servers running (logs: $CLUSTER_DIR/party{0,1,2}.log)"

# 4. The page, until Ctrl-C.
./target/release/cipherdm serve-page --cluster "$CLUSTER_DIR/cluster.toml" --web web \
  --listen "$PAGE_ADDR" &
page_pid=$!
say "press Ctrl-C to stop the page and the servers"
wait "$page_pid"
