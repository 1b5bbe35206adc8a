#!/usr/bin/env bash
# Installs what building and testing this project needs, on a bare Debian 12
# machine with rustup's stable Rust.  Idempotent: installs only what is missing.
# No prebuilt toolchains are downloaded: the wasm32 std is built from Debian's
# rust-web-src with -Z build-std (see README), tools come from crates.io.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# 1. Debian packages: Debian's rustc for the wasm target, its std sources and
#    linker, the browser + driver for headless tests, and the font the
#    benchmark plots are drawn with.
APT_PKGS=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 chromium chromium-driver fonts-dejavu-core)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
/usr/bin/rustc --print target-list | grep -qx wasm32-unknown-unknown || die "Debian rustc lacks wasm32-unknown-unknown"
[ -f /usr/lib/rustlib/src/rust/library/Cargo.lock ] || die "rust-web-src std sources missing"
/usr/bin/rust-lld -flavor wasm --version >/dev/null || die "rust-lld (wasm) not working"
chromium --version 2>/dev/null | grep -q Chromium || die "chromium not working"
chromedriver --version >/dev/null || die "chromedriver not working"

# 2. rustup components for the native checks.
cargo fmt --version >/dev/null 2>&1 || die "rustfmt missing (rustup component add rustfmt)"
cargo clippy --version >/dev/null 2>&1 || die "clippy missing (rustup component add clippy)"

# 3. wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock.
export PATH="$HOME/.cargo/bin:$PATH"
# Both tools only drive builds, so they are compiled for build time rather
# than run time (opt-level 1, no LTO, many codegen units).
export CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=false
WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' "$ROOT/Cargo.lock")"
[ -n "$WB_VERSION" ] || die "wasm-bindgen not found in Cargo.lock"
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $WB_VERSION"; then
  say "building wasm-bindgen-cli $WB_VERSION (a few minutes)"
  # --locked can fail when the tool's lockfile pins a yanked crate; retry without.
  cargo install wasm-bindgen-cli --version "=$WB_VERSION" --locked \
    || cargo install wasm-bindgen-cli --version "=$WB_VERSION" --force
fi
wasm-bindgen-test-runner --version >/dev/null 2>&1 || die "wasm-bindgen-test-runner missing"

# 4. wasm-pack (drives the headless-browser tests).
if ! wasm-pack --version >/dev/null 2>&1; then
  say "building wasm-pack (a few minutes)"
  cargo install wasm-pack --locked
fi
say "toolchain ready: $(/usr/bin/rustc --version) for wasm, $(rustc --version) native, $(wasm-bindgen --version), $(wasm-pack --version)"
