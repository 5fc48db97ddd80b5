#!/usr/bin/env bash
# Builds quench for aarch64 and runs every kernel module's tests under qemu user-mode emulation,
# so the NEON kernels are checked against their scalar twins on an x86_64 machine. Timings under
# qemu mean nothing; correctness does. Installs what is missing (rustup target, Debian's cross gcc,
# arm64 libc and qemu-user-static) and nothing else.
#
# Usage: scripts/test-aarch64.sh [extra cargo test args, e.g. -- --nocapture]
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu

if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi

missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
[ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ] || missing+=(libc6-dev-arm64-cross)
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
fi

# The whole crate (library, binary, tests, benches) must cross-build; then the kernel tests run.
cargo test --target "$target" --all-targets --no-run
cargo test --target "$target" --lib kernels "$@"
