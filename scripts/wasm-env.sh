# Sourced by scripts that build for wasm32: selects Debian's rustc (which can
# build the wasm32 std from rust-web-src) and keeps its output apart from the
# native target directory.  Native builds keep using rustup's toolchain.
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export PATH="$HOME/.cargo/bin:/usr/bin:$PATH"
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$ROOT/target/wasm"
export CHROMEDRIVER=/usr/bin/chromedriver
unset RUSTFLAGS # any change of flags rebuilds std
WASM_BUILD_STD=(-Z build-std=std,panic_abort)
