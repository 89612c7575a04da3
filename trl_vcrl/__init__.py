"""VCRL (Variance-based Curriculum Reinforcement Learning, arXiv 2509.19803) for Hugging Face TRL."""

from .config import VCRLConfig
from .curriculum import BatchSelection, KappaSchedule, ReplayBank, group_scores, normalized_variance
from .rows import row_key
from .data import (
    ARITHMETIC_LEVELS,
    EVAL_BENCHMARKS,
    MATH_PROMPT_TEMPLATE,
    arithmetic_curriculum_dataset,
    load_dapo_math,
    reasoning_gym_dataset,
)
from .pretrained import load_smollm2
from .rewards import accuracy_reward, format_reward
from .trainer import VCRLTrainer

__version__ = "0.1.0"

__all__ = [
    "ARITHMETIC_LEVELS",
    "EVAL_BENCHMARKS",
    "MATH_PROMPT_TEMPLATE",
    "BatchSelection",
    "KappaSchedule",
    "ReplayBank",
    "VCRLConfig",
    "VCRLTrainer",
    "accuracy_reward",
    "arithmetic_curriculum_dataset",
    "format_reward",
    "group_scores",
    "load_dapo_math",
    "load_smollm2",
    "normalized_variance",
    "reasoning_gym_dataset",
    "row_key",
]
