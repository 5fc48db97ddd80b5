#!/usr/bin/env bash
# Measures one cell twice in a row (quench repeat), first as the machine is, then with a CPU hog
# on every core beside it, so a user can see (a) how far two measurements of the same thing differ
# here and (b) that the noise flag fires when something else competes for the CPU.
# Usage: scripts/noise-check.sh [MODEL] [extra quench repeat args]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-assets/models/mnist-cnn.onnx}
shift || true
bash scripts/setup-ort.sh
cargo build --release --quiet
quench=target/release/quench
[ -n "${CARGO_TARGET_DIR:-}" ] && quench="$CARGO_TARGET_DIR/release/quench"

echo "== as the machine is"
"$quench" repeat "$model" --times 2 "$@"

hogs=()
cleanup() { [ ${#hogs[@]} -eq 0 ] || kill "${hogs[@]}" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq "$(nproc)"); do
  sh -c 'while :; do :; done' &
  hogs+=($!)
done
echo "== with $(nproc) busy-loop hog(s) beside it"
"$quench" repeat "$model" --times 2 "$@"
