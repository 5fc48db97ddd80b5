#!/usr/bin/env bash
# The test suite, as the README gives it: installs ONNX Runtime into .venv when missing, runs every
# test on this machine, then the kernel tests for aarch64 under qemu.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-ort.sh
cargo test --all-targets
bash scripts/test-aarch64.sh
