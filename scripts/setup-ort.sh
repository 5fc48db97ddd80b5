#!/usr/bin/env bash
# Installs ONNX Runtime (the PyPI wheel, which carries libonnxruntime.so) into the project's .venv,
# where quench finds it. Idempotent: does nothing when the pinned version is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
ORT_VERSION=1.32.0
lib_glob=".venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}"
# shellcheck disable=SC2086
if compgen -G "$lib_glob" >/dev/null; then
  exit 0
fi
echo "setup-ort: installing onnxruntime==${ORT_VERSION} into .venv (once)" >&2
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "onnxruntime==${ORT_VERSION}"
compgen -G "$lib_glob" >/dev/null || { echo "setup-ort: libonnxruntime.so.${ORT_VERSION} not found after install" >&2; exit 1; }
