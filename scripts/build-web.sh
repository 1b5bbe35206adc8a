#!/usr/bin/env bash
# Builds the browser client into web/pkg (the wasm module and its JS
# bindings), with Debian's rustc and -Z build-std (see scripts/wasm-env.sh).
# Prints the module's size, raw and gzipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/wasm-env.sh
/usr/bin/cargo build -q -p client-wasm --release --target wasm32-unknown-unknown "${WASM_BUILD_STD[@]}"
wasm-bindgen --target web --no-typescript --out-dir web/pkg \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/client_wasm.wasm"
wasm="web/pkg/client_wasm_bg.wasm"
echo "[build-web] $wasm: $(stat -c %s "$wasm") bytes, $(gzip -9c "$wasm" | wc -c) gzipped"
