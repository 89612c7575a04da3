#!/usr/bin/env bash
# vLLM test stage: build/refresh the separate vLLM environment (.ci/vllm_env.sh), then run tests/vllm_stage in it.
#
#   bash .ci/run_vllm_tests.sh [extra pytest args]
#
# VLLM_VENV=path        the environment (default .venv-vllm at the repo root)
# VCRL_VLLM_SKIP_ENV=1  use the environment as it is, without .ci/vllm_env.sh
# Exits non-zero when the environment cannot be built or vLLM cannot be imported: on CI this stage runs, never skips.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
export VLLM_VENV="${VLLM_VENV:-$REPO_ROOT/.venv-vllm}"
START=$(date +%s)
[[ "${VCRL_VLLM_SKIP_ENV:-0}" == "1" ]] || bash .ci/vllm_env.sh
ENV_DONE=$(date +%s)

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
export VCRL_REQUIRE_VLLM=1  # a missing vLLM is an error here, not a skip
set +e
"$VLLM_VENV/bin/python" -m pytest tests/vllm_stage -W ignore::DeprecationWarning -W ignore::FutureWarning \
    --timeout 600 -rs --durations=10 "$@"
rc=$?
set -e
echo "[run_vllm_tests] environment $((ENV_DONE - START)) s, tests $(($(date +%s) - ENV_DONE)) s, pytest exit $rc"
exit $rc
