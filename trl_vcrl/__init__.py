"""VCRL (Variance-based Curriculum Reinforcement Learning, arXiv 2509.19803) for Hugging Face TRL.

Names are imported on first use, so the pure core (`trl_vcrl.curriculum`, `trl_vcrl.prediction`, `trl_vcrl.rows`)
loads without torch or TRL.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "config": ["VCRLConfig"],
    "curriculum": ["BatchSelection", "KappaSchedule", "ReplayBank", "group_scores", "normalized_variance"],
    "data": ["ARITHMETIC_LEVELS", "EVAL_BENCHMARKS", "MATH_PROMPT_TEMPLATE", "arithmetic_curriculum_dataset",
             "load_benchmark", "load_dapo_math", "reasoning_gym_dataset"],
    "prediction": ["PromptHistory", "RolloutScreen"],
    "pretrained": ["load_smollm2"],
    "rewards": ["accuracy_reward", "format_reward"],
    "rows": ["row_key"],
    "trainer": ["VCRLTrainer"],
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'trl_vcrl' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
