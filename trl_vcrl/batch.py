"""Assembling one training batch from several generation calls: GRPO advantages of the whole batch, and merging
the row tensors of TRL's batches with the padding each needs."""

from collections.abc import Sequence

import torch
from trl.trainer.utils import nanstd

from .upstream import COMPLETION_KEYS, PROMPT_KEYS, RECOMPUTED_KEYS, check_batch_keys


def grpo_advantages(
    rewards_per_func: torch.Tensor,
    reward_weights: torch.Tensor,
    num_generations: int,
    scale_rewards: str,
    multi_objective_aggregation: str,
) -> torch.Tensor:
    """GRPO advantages of a whole (global) batch, with the same formulas as TRL 1.16's GRPOTrainer.

    Needed because VCRL assembles the batch from several generation calls: with `scale_rewards="batch"` or
    `normalize_then_sum` the advantages depend on the whole batch. Tested equal to TRL's on unmerged batches.
    """
    unscorable = torch.isnan(rewards_per_func).all(dim=1)
    weights = reward_weights.to(rewards_per_func.device).unsqueeze(0)
    if multi_objective_aggregation == "sum_then_normalize":
        rewards = (rewards_per_func * weights).nansum(dim=1)
        rewards[unscorable] = torch.nan
        grouped = rewards.view(-1, num_generations)
        mean = torch.nanmean(grouped, dim=1).repeat_interleave(num_generations)
        if scale_rewards == "batch":
            std = nanstd(rewards).expand_as(rewards)
        else:
            std = nanstd(grouped, dim=1).repeat_interleave(num_generations)
        advantages = rewards - mean
        if scale_rewards != "none":
            advantages = advantages / (std + 1e-4)
    else:  # normalize_then_sum
        grouped = rewards_per_func.view(-1, num_generations, rewards_per_func.size(1))
        normalized = (grouped - torch.nanmean(grouped, dim=1, keepdim=True)) / (
            nanstd(grouped, dim=1, keepdim=True) + 1e-4
        )
        rewards = (normalized.view(-1, rewards_per_func.size(1)) * weights).nansum(dim=1)
        rewards[unscorable] = torch.nan
        advantages = (rewards - torch.nanmean(rewards)) / (nanstd(rewards) + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


def merge_rows(
    pieces: Sequence[dict[str, torch.Tensor]],
    pad_token_id: int,
    pad_to_multiple_of: int | None,
    sequence_level_ratio: bool,
) -> dict:
    """Concatenate the row-aligned tensors of several training batches, re-padding to a common width.

    Prompts are left-padded and completions right-padded as in TRL; columns that are padding in every row are
    trimmed so the merged batch is as wide as TRL would make it for the same rows. `sequence_level_ratio` (from the
    configuration, never guessed from a shape) says the importance-sampling ratio is one value per row, `(B, 1)`.
    """
    prompt_width = max(int(p["prompt_mask"].sum(dim=1).max()) for p in pieces)
    completion_width = max(_content_width(p["completion_mask"]) for p in pieces)
    if pad_to_multiple_of:
        prompt_width = -(-prompt_width // pad_to_multiple_of) * pad_to_multiple_of
        completion_width = -(-completion_width // pad_to_multiple_of) * pad_to_multiple_of
    merged = {}
    for key in pieces[0]:
        if key in PROMPT_KEYS:
            merged[key] = torch.cat(
                [_fit(p[key], prompt_width, pad_value(key, pad_token_id), left=True) for p in pieces]
            )
        elif key == "importance_sampling_ratio" and sequence_level_ratio:
            merged[key] = torch.cat([p[key] for p in pieces])
        elif key in COMPLETION_KEYS:
            merged[key] = torch.cat(
                [_fit(p[key], completion_width, pad_value(key, pad_token_id), left=False) for p in pieces]
            )
        elif key not in RECOMPUTED_KEYS:
            check_batch_keys({key: None})
    return merged


def pad_value(key: str, pad_token_id: int) -> float:
    """The value that pads a batch tensor's columns where a row has no tokens."""
    if key in ("prompt_ids", "completion_ids"):
        return pad_token_id
    if key == "ref_per_token_logps":
        # TRL's KL term exp(ref - logp) - (ref - logp) - 1 is computed at padded positions too, then masked. With
        # ref = 0 it is exp(-logp), which overflows to inf (inf * 0 = NaN) when the policy's log-prob of the pad
        # token is below about -88; a very negative ref keeps the term finite, so the mask makes it exactly 0.
        return -1e4
    return {"importance_sampling_ratio": 1.0, "tool_mask": 1}.get(key, 0)


def _content_width(completion_mask: torch.Tensor) -> int:
    used = completion_mask.any(dim=0).nonzero()
    return int(used.max()) + 1 if len(used) else 1


def _fit(tensor: torch.Tensor, width: int, value: float, left: bool) -> torch.Tensor:
    """Cut or pad `tensor` (B, T) to `width` columns on the padding side."""
    extra = width - tensor.size(1)
    if extra <= 0:
        return tensor[:, -width:] if left else tensor[:, :width]
    padding = tensor.new_full((tensor.size(0), extra), value)
    return torch.cat([padding, tensor] if left else [tensor, padding], dim=1)
