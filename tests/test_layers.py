"""The package's layers: the pure core imports nothing heavy, and the package imports its parts lazily."""

import subprocess
import sys

import pytest

PURE_CORE = ("trl_vcrl.curriculum", "trl_vcrl.prediction", "trl_vcrl.rows", "trl_vcrl.metrics")
HEAVY = ("torch", "trl", "transformers", "datasets", "math_verify", "sympy")


@pytest.mark.parametrize("module", PURE_CORE + ("trl_vcrl",))
def test_pure_core_loads_nothing_heavy(module):
    """Run in a fresh interpreter: this test process has long imported torch and TRL."""
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_lazy_exports_resolve_to_their_modules():
    import trl_vcrl
    from trl_vcrl.trainer import VCRLTrainer

    assert trl_vcrl.VCRLTrainer is VCRLTrainer
    for name in trl_vcrl.__all__:
        assert getattr(trl_vcrl, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'VCRLTrainr'"):
        trl_vcrl.VCRLTrainr  # noqa: B018
