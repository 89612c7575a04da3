"""What VCRL needs from TRL and transformers that their public API does not promise, in one place.

Delete a workaround here when the upstream version range no longer needs it.
"""

import types

import torch
from transformers import PreTrainedModel


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
