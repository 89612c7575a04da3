"""What VCRL needs from TRL and transformers that their public API does not promise, in one place.

VCRLTrainer extends private parts of TRL's GRPOTrainer: `_generate_and_score_completions(inputs)` (called once per
generation round), `_calculate_rewards(...)` (observed for the gathered rewards), `_metrics` and `_logs` (rolled back
and refilled), the batch keys it merges, and the advantage settings it recomputes advantages with. `check_trl`
verifies them when the trainer is built, so a TRL upgrade that changes one fails there with a clear message instead
of misbehaving mid-run. Delete a workaround here when the supported version range no longer needs it.
"""

import inspect
import types

import torch
import trl
from packaging.version import Version
from transformers import PreTrainedModel
from trl import GRPOTrainer

SUPPORTED_TRL = (Version("1.16.0"), Version("1.17.0"))  # [low, high), as setup.cfg pins it
# Row-aligned tensors of TRL's training batch, by how they are padded when rows of several generation calls merge.
PROMPT_KEYS = ("prompt_ids", "prompt_mask")
COMPLETION_KEYS = (
    "completion_ids",
    "completion_mask",
    "old_per_token_logps",
    "ref_per_token_logps",
    "sampling_per_token_logps",
    "importance_sampling_ratio",
    "tool_mask",
)
RECOMPUTED_KEYS = ("advantages", "num_items_in_batch")
_HOOK_PARAMETERS = {
    "_generate_and_score_completions": ["self", "inputs"],
    "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
}
_ATTRIBUTES = ("_metrics", "_logs", "reward_weights", "reward_func_names", "scale_rewards", "num_generations",
               "multi_objective_aggregation", "use_vllm", "vllm_importance_sampling_mode", "pad_to_multiple_of")  # fmt: skip
_LOG_COLUMNS = ("prompt", "completion", "rewards", "advantages", "extra")
_ADVANTAGE_SETTINGS = {
    "scale_rewards": ("group", "batch", "none"),
    "multi_objective_aggregation": ("sum_then_normalize", "normalize_then_sum"),
}


def check_trl(trainer: GRPOTrainer) -> None:
    """Fail with a clear message when the installed TRL breaks an assumption VCRL's curriculum relies on."""
    problems = []
    installed = Version(trl.__version__)
    if not SUPPORTED_TRL[0] <= installed < SUPPORTED_TRL[1]:
        problems.append(f"trl {installed} is outside the supported range >={SUPPORTED_TRL[0]},<{SUPPORTED_TRL[1]}")
    for name, expected in _HOOK_PARAMETERS.items():
        parameters = list(inspect.signature(getattr(GRPOTrainer, name)).parameters)
        if parameters != expected:
            problems.append(f"GRPOTrainer.{name} takes {parameters}, VCRL expects {expected}")
    problems += [f"GRPOTrainer has no attribute {name!r}" for name in _ATTRIBUTES if not hasattr(trainer, name)]
    if hasattr(trainer, "_logs") and not set(_LOG_COLUMNS) <= set(trainer._logs):
        problems.append(f"GRPOTrainer._logs has {sorted(trainer._logs)}, VCRL expects {list(_LOG_COLUMNS)}")
    for name, known in _ADVANTAGE_SETTINGS.items():
        if getattr(trainer, name, known[0]) not in known:
            problems.append(f"{name}={getattr(trainer, name)!r} has no advantage formula in VCRL (known: {known})")
    if problems:
        raise RuntimeError(
            f"VCRLTrainer's curriculum does not support the installed TRL {installed}: {'; '.join(problems)}. Install "
            f"trl>={SUPPORTED_TRL[0]},<{SUPPORTED_TRL[1]}, or set dynamic_sampling=False and replay=False (GRPO)."
        )


def check_batch_keys(batch: dict) -> None:
    """Fail on a training-batch key VCRL does not know how to merge (a TRL change, or a multimodal model)."""
    unknown = sorted(set(batch) - set(PROMPT_KEYS) - set(COMPLETION_KEYS) - set(RECOMPUTED_KEYS))
    if unknown:
        raise RuntimeError(
            f"GRPOTrainer's batch holds {unknown}, which VCRL cannot merge across generation calls (trl "
            f"{trl.__version__}; multimodal inputs are not supported with dynamic sampling). Set dynamic_sampling=False "
            f"and replay=False, use a text-only model, or install trl>={SUPPORTED_TRL[0]},<{SUPPORTED_TRL[1]}."
        )


def stop_input_grad_hook_leak(model: torch.nn.Module) -> None:
    """Make `enable_input_require_grads` replace its forward hook instead of adding one more.

    Upstream cause (transformers 5.x): `enable_input_require_grads` registers a new hook on the input embeddings
    without removing the previous one, and TRL's `unwrap_model_for_generation` re-enables gradient checkpointing
    after every generation call, which calls it again. Every call leaks a hook that every later forward pass runs,
    so long runs slow down step by step (VCRL generates several times per step, so it leaks fastest). Patched on
    the instances inside `model` only (also the base model under a PEFT wrapper).
    """
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and "enable_input_require_grads" not in vars(module):
            module.enable_input_require_grads = types.MethodType(_enable_input_require_grads_once, module)


def _enable_input_require_grads_once(self: PreTrainedModel) -> None:
    for hook in getattr(self, "_require_grads_hooks", None) or ():
        hook.remove()
    PreTrainedModel.enable_input_require_grads(self)
