# Two commands on a fresh machine (each sets up .venv first, idempotently):
#   make demo   the offline default VCRL training run (CPU, no network)
#   make test   the full test suite (unit, integration, slow multi-process and notebook tests)
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export OMP_NUM_THREADS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-vllm

setup:
	bash .ci/setup.sh

demo: setup
	.venv/bin/trl-vcrl demo

test: setup
	$(PY) -m pytest tests -m "slow or not slow" --timeout 1200 -rs

test-vllm:
	bash .ci/run_vllm_tests.sh
