import json
import logging
import os
import random
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from accelerate.utils import gather_object
from datasets import IterableDataset
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import get_config_model_id, nanstd

from .config import VCRLConfig
from .curriculum import BatchSelection, Candidate, ReplayBank, group_scores, plan_refill, prompt_key

logger = logging.getLogger(__name__)

STATE_FILE = "vcrl_state.json"
P_HIST_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# Row-aligned tensors of TRL 1.16's training batch and how to pad them when rows of several generation calls merge.
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


def merge_rows(pieces: Sequence[dict[str, torch.Tensor]], pad_token_id: int, pad_to_multiple_of: int | None) -> dict:
    """Concatenate the row-aligned tensors of several training batches, re-padding to a common width.

    Prompts are left-padded and completions right-padded as in TRL; columns that are padding in every row are
    trimmed so the merged batch is as wide as TRL would make it for the same rows.
    """
    pad_values = {
        "prompt_ids": pad_token_id,
        "completion_ids": pad_token_id,
        "importance_sampling_ratio": 1.0,
        "tool_mask": 1,
    }
    prompt_width = max(int(p["prompt_mask"].sum(dim=1).max()) for p in pieces)
    completion_width = max(_content_width(p["completion_mask"]) for p in pieces)
    if pad_to_multiple_of:
        prompt_width = -(-prompt_width // pad_to_multiple_of) * pad_to_multiple_of
        completion_width = -(-completion_width // pad_to_multiple_of) * pad_to_multiple_of
    merged = {}
    for key in pieces[0]:
        if key in PROMPT_KEYS:
            merged[key] = torch.cat([_fit(p[key], prompt_width, pad_values.get(key, 0), left=True) for p in pieces])
        elif key in COMPLETION_KEYS:
            if pieces[0][key].size(1) == 1 and key == "importance_sampling_ratio":  # sequence-level ratio, (B, 1)
                merged[key] = torch.cat([p[key] for p in pieces])
            else:
                merged[key] = torch.cat(
                    [_fit(p[key], completion_width, pad_values.get(key, 0), left=False) for p in pieces]
                )
        elif key not in ("advantages", "num_items_in_batch"):
            raise NotImplementedError(
                f"VCRL cannot merge the batch key {key!r} (multimodal inputs are not supported with dynamic sampling); "
                f"set dynamic_sampling=False and replay=False or use a text-only model."
            )
    return merged


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


class VCRLTrainer(GRPOTrainer):
    """
    Trainer for VCRL, Variance-based Curriculum Reinforcement Learning ([arXiv 2509.19803](https://huggingface.co/papers/2509.19803)).

    A drop-in replacement for [`~trl.GRPOTrainer`] taking the same arguments. What differs, in training only:

    - After each generation batch is generated and scored (by GRPOTrainer itself), every group gets its normalised
      reward variance `p`; groups with `p < kappa(step)` are dropped.
    - Dropped groups are replaced by prompts from a replay bank of earlier high-variance prompts, re-rolled with the
      current policy, then by further dataset prompts, for at most `max_refill_rounds` extra generation calls; a
      replacement must pass `kappa` too. Still-missing slots take the best dropped groups, so the batch size never
      changes. Passing groups enter the bank; replayed ones get their priority updated.
    - Advantages and `num_items_in_batch` are recomputed for the assembled batch.
    - The bank, the refill sampler state and the schedule position are saved with every checkpoint.

    The loss, evaluation (never filtered), vLLM, PEFT and distributed support are GRPOTrainer's. A plain
    [`~trl.GRPOConfig`] (or `args=None`) gets VCRL's defaults. Dynamic sampling needs a map-style text dataset.
    """

    _tag_names = ["trl", "vcrl"]
    _name = "VCRL"
    _paper = {
        "title": "VCRL: Variance-based Curriculum Reinforcement Learning for Large Language Models",
        "id": "2509.19803",
        # docstyle-ignore
        "citation": textwrap.dedent("""\
            @article{jiang2025vcrl,
                title        = {{VCRL: Variance-based Curriculum Reinforcement Learning for Large Language Models}},
                author       = {Guochao Jiang and Wenfeng Feng and Guofeng Quan and Chuzhan Hao and Yuewei Zhang and Guohua Liu and Hao Wang},
                year         = 2025,
                eprint       = {arXiv:2509.19803},
            }"""),
    }

    def __init__(self, model, reward_funcs=None, args: VCRLConfig | GRPOConfig | None = None, *pos_args, **kwargs):
        if args is None:
            model_name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = VCRLConfig(f"{model_name.split('/')[-1]}-VCRL")
        elif not isinstance(args, VCRLConfig):
            args = VCRLConfig.from_grpo_config(args)
            logger.warning("VCRLTrainer got a GRPOConfig; using it with VCRL's defaults (%s).", _vcrl_settings(args))
        super().__init__(model, reward_funcs, args, *pos_args, **kwargs)
        if args.dynamic_sampling:
            if self._is_vlm:
                raise NotImplementedError(
                    "VCRL dynamic sampling supports text-only models; set dynamic_sampling=False."
                )
            if isinstance(self.train_dataset, IterableDataset) and args.max_refill_rounds > 0:
                raise ValueError(
                    f"max_refill_rounds={args.max_refill_rounds} draws extra prompts at random, which needs a map-style "
                    f"train_dataset, got an IterableDataset. Use a datasets.Dataset or set max_refill_rounds=0."
                )
        self.threshold = args.threshold_schedule()
        self.replay_bank = ReplayBank(
            capacity=args.replay_bank_size if args.replay else 0,
            momentum=args.replay_momentum,
            replay_limit=args.replay_limit,
            seed=args.seed,
        )
        self._refill_rng = random.Random(args.seed)  # identical on every process: all draw the same prompts
        self._warned_fallback = False
        self._round_rewards = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._round_rewards = rewards_per_func  # gathered over processes, global row order
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        if not (self.model.training and self.args.dynamic_sampling):
            return super()._generate_and_score_completions(inputs)
        return self._curriculum_batch(inputs)

    def _curriculum_batch(self, inputs: list[dict]) -> dict:
        """Generate, filter by `p >= kappa`, refill, and assemble one generation batch (the VCRL step)."""
        G, rank = self.num_generations, self.accelerator.process_index
        groups_per_process = len(inputs) // G
        kappa = self.threshold(self.state.global_step)
        selection = BatchSelection(self.accelerator.num_processes, groups_per_process, kappa)
        rounds: list[_Round] = []

        def generate(global_groups: list[tuple[str, dict, str]]) -> list[Candidate]:
            per_process = len(global_groups) // self.accelerator.num_processes
            local = global_groups[rank * per_process : (rank + 1) * per_process]
            output = super(VCRLTrainer, self)._generate_and_score_completions(
                [dict(row) for _, row, _ in local for _ in range(G)]  # whole groups, as TRL's RepeatSampler gives
            )
            scores = group_scores(
                self._combined_rewards(self._round_rewards).tolist(), G, tuple(self.args.reward_range)
            )
            candidates = [
                Candidate(
                    process=g // per_process, round=len(rounds), index=g % per_process, p=p, source=source, key=key
                )
                for g, (p, (key, _, source)) in enumerate(zip(scores, global_groups))
            ]
            rounds.append(
                _Round(output, self._round_rewards, per_process, candidates, [row for _, row, _ in global_groups])
            )
            selection.offer(candidates)
            return candidates

        first = generate([(prompt_key(row), row, "fresh") for row in gather_object(inputs[::G])])
        # TRL's own metrics (reward, completion lengths, ...) keep describing the first-pass sample of the dataset:
        # refill rounds replay selected prompts, which would bias them. Their cost shows in the vcrl/ metrics.
        first_pass_lengths = {name: len(values) for name, values in self._metrics["train"].items()}
        refill_rounds = 0
        while max(selection.missing()) > 0 and refill_rounds < self.args.max_refill_rounds:
            # A prompt already generated in this step is not replayed again in it (no duplicate groups).
            seen = {c.key for r in rounds for c in r.candidates}
            per_process, plan = plan_refill(selection.missing(), self.replay_bank.available(exclude=seen))
            taken = iter(self.replay_bank.take(sum(plan), exclude=seen))
            global_groups = []
            for from_bank in plan:
                for slot in range(per_process):
                    if slot < from_bank:
                        global_groups.append((*next(taken), "bank"))
                    else:
                        key, row = self._draw_refill_row(exclude=seen)
                        seen.add(key)
                        global_groups.append((key, row, "refill"))
            generate(global_groups)
            refill_rounds += 1
        selection.finish()
        if selection.fallback and not self._warned_fallback:
            warnings.warn(
                f"VCRL: {len(selection.fallback)} group(s) below kappa={kappa} kept to fill the batch after "
                f"{refill_rounds} refill round(s) (step {self.state.global_step}). Raise max_refill_rounds or "
                f"replay_bank_size, or lower kappa, if this persists; vcrl/groups_from_fallback counts it. Warned once.",
                stacklevel=2,
            )
            self._warned_fallback = True

        if self.args.replay:
            for rnd in rounds:
                for candidate, row in zip(rnd.candidates, rnd.rows):
                    if candidate.source == "bank":
                        self.replay_bank.update(candidate.key, candidate.p)
                    elif candidate.p >= kappa:
                        self.replay_bank.add(candidate.key, row, candidate.p)
        for name, values in list(self._metrics["train"].items()):
            del values[first_pass_lengths.get(name, 0) :]
            if not values:  # a metric only refill rounds produced: TRL averages every list it holds
                del self._metrics["train"][name]
        batch, advantages = self._assemble(rounds, selection)
        self._log_curriculum(kappa, first, selection, rounds, refill_rounds, advantages)
        return batch

    def _draw_refill_row(self, exclude: set[str], attempts: int = 16) -> tuple[str, dict]:
        """A random dataset row whose prompt was not generated in this step (a repeat would only duplicate a group).

        Gives up avoiding repeats after `attempts` draws, so a dataset smaller than a batch still works.
        """
        for _ in range(attempts):
            row = self.train_dataset[self._refill_rng.randrange(len(self.train_dataset))]
            key = prompt_key(row)
            if key not in exclude:
                break
        return key, row

    def _combined_rewards(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        """The weighted-sum reward TRL builds advantages from, checked against `reward_range` (NaN if unscorable)."""
        combined = (rewards_per_func * self.reward_weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
        combined[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        low, high = self.args.reward_range
        outside = ((combined < low) | (combined > high)).nonzero()
        if len(outside):
            row = int(outside[0])
            parts = ", ".join(
                f"{name}={rewards_per_func[row, j].item():g} x weight {self.reward_weights[j].item():g}"
                for j, name in enumerate(self.reward_func_names)
            )
            raise ValueError(
                f"Combined reward {combined[row].item():g} of completion {row} is outside reward_range="
                f"{list(self.args.reward_range)} ({parts}). VCRL never clips rewards: set reward_range to the true "
                f"bounds of the weighted sum of your reward functions."
            )
        return combined

    def _assemble(self, rounds: list["_Round"], selection: BatchSelection) -> tuple[dict, torch.Tensor]:
        """The local training batch made of this process's chosen groups, and the global advantages."""
        G, rank = self.num_generations, self.accelerator.process_index

        def global_rows(c: Candidate) -> slice:
            start = (c.process * rounds[c.round].per_process + c.index) * G
            return slice(start, start + G)

        trained_rewards = torch.cat(
            [rounds[c.round].rewards[global_rows(c)] for chosen in selection.chosen for c in chosen]
        )
        advantages = grpo_advantages(
            trained_rewards, self.reward_weights, G, self.scale_rewards, self.multi_objective_aggregation
        )
        first_batch_only = all(
            [(c.round, c.index) for c in chosen] == [(0, i) for i in range(selection.groups_per_process)]
            for chosen in selection.chosen
        )
        if first_batch_only:  # nothing swapped anywhere: TRL's batch is already right
            return rounds[0].output, advantages
        pieces = []
        for c in selection.chosen[rank]:
            output = rounds[c.round].output
            local_rows = slice(c.index * G, (c.index + 1) * G)
            pieces.append(
                {k: v[local_rows] for k, v in output.items() if k not in ("num_items_in_batch", "advantages")}
            )
        batch = merge_rows(pieces, self._tokenizer.pad_token_id, self.pad_to_multiple_of)
        rows = selection.groups_per_process * G
        batch["advantages"] = advantages[rank * rows : (rank + 1) * rows]
        loss_mask = batch["completion_mask"] * batch["tool_mask"] if "tool_mask" in batch else batch["completion_mask"]
        batch["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        return batch, advantages

    def _log_curriculum(self, kappa, first, selection, rounds, refill_rounds, advantages) -> None:
        metrics = self._metrics["train"]
        first_p = [c.p for c in first]
        trained = [c for chosen in selection.chosen for c in chosen]
        fallback = {id(c) for c in selection.fallback}
        metrics["vcrl/kappa"].append(kappa)
        metrics["vcrl/p_mean"].append(sum(first_p) / len(first_p))
        for low, high in zip(P_HIST_EDGES, P_HIST_EDGES[1:]):
            in_bin = sum(low <= p < high or (high == 1.0 and p == 1.0) for p in first_p)
            metrics[f"vcrl/p_hist/{low:.1f}-{high:.1f}"].append(in_bin / len(first_p))
        metrics["vcrl/kept_fraction"].append(sum(p >= kappa for p in first_p) / len(first_p))
        for source in ("bank", "refill"):
            used = sum(c.source == source and id(c) not in fallback for c in trained)
            metrics[f"vcrl/groups_from_{source}"].append(used)
        metrics["vcrl/groups_from_fallback"].append(len(selection.fallback))
        metrics["vcrl/refill_rounds"].append(refill_rounds)
        for name, value in self.replay_bank.stats().items():
            metrics[f"vcrl/{name}"].append(value)
        metrics["vcrl/rollouts_per_trained_group"].append(sum(len(r.candidates) for r in rounds) / len(trained))
        nonzero = advantages.view(-1, self.num_generations).ne(0).any(dim=1).float().mean().item()
        metrics["vcrl/nonzero_advantage_fraction"].append(nonzero)

    def _save_checkpoint(self, model, trial):
        # Written before super(): it pushes the checkpoint to the Hub when push_to_hub is on.
        if self.args.should_save:
            checkpoint_dir = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            os.makedirs(checkpoint_dir, exist_ok=True)
            with open(os.path.join(checkpoint_dir, STATE_FILE), "w") as f:
                json.dump(self.curriculum_state_dict(), f)
        super()._save_checkpoint(model, trial)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, STATE_FILE)
        if not os.path.exists(path):
            logger.warning("No %s in %s: resuming with an empty replay bank.", STATE_FILE, checkpoint)
            return
        with open(path) as f:
            self.load_curriculum_state_dict(json.load(f))

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """TRL's model card (VCRL tags and citation) plus a section with the VCRL settings and curriculum statistics."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        path = os.path.join(self.args.output_dir, "README.md")
        with open(path) as f:
            card = f.read()
        section = _model_card_section(self.args, curriculum_summary(self.state.log_history))
        anchor = card.find("### Framework versions")
        card = card[:anchor] + section + card[anchor:] if anchor >= 0 else card + section
        with open(path, "w") as f:
            f.write(card)

    def curriculum_state_dict(self) -> dict:
        """Everything VCRL needs to resume exactly: bank, refill sampler state, schedule position."""
        version, internal, gauss = self._refill_rng.getstate()
        return {
            "replay_bank": self.replay_bank.state_dict(),
            "refill_rng_state": [version, list(internal), gauss],
            "global_step": self.state.global_step,
            "kappa": self.threshold(self.state.global_step),
            "warned_fallback": self._warned_fallback,
        }

    def load_curriculum_state_dict(self, state: dict) -> None:
        self.replay_bank.load_state_dict(state["replay_bank"])
        version, internal, gauss = state["refill_rng_state"]
        self._refill_rng.setstate((version, tuple(internal), gauss))
        self._warned_fallback = state["warned_fallback"]


@dataclass
class _Round:
    """One generation call of a VCRL step."""

    output: dict  # TRL's local training batch for this call
    rewards: torch.Tensor  # gathered rewards per function, global row order
    per_process: int  # groups each process generated
    candidates: list[Candidate]  # one per global group
    rows: list[dict]  # dataset row of each global group


def _vcrl_settings(args: VCRLConfig) -> str:
    return (
        f"kappa schedule {args.threshold_schedule().pieces}, reward_range={args.reward_range}, "
        f"replay_bank_size={args.replay_bank_size}, replay_limit={args.replay_limit}, "
        f"max_refill_rounds={args.max_refill_rounds}"
    )


def curriculum_summary(log_history: list[dict]) -> dict[str, float]:
    """Run-level curriculum statistics from a trainer's log history (per logging step averages, as TRL logs them).

    Returns an empty dict for a run without VCRL metrics (e.g. both switches off).
    """
    steps = [entry for entry in log_history if "vcrl/kappa" in entry]
    if not steps:
        return {}

    def mean(name):
        return sum(entry[name] for entry in steps) / len(steps)

    return {
        "logged steps": len(steps),
        "final kappa": steps[-1]["vcrl/kappa"],
        "mean p of first-pass groups": mean("vcrl/p_mean"),
        "mean kept fraction": mean("vcrl/kept_fraction"),
        "mean groups from bank per step": mean("vcrl/groups_from_bank"),
        "mean groups from refill per step": mean("vcrl/groups_from_refill"),
        "mean groups from fallback per step": mean("vcrl/groups_from_fallback"),
        "mean rollouts per trained group": mean("vcrl/rollouts_per_trained_group"),
        "mean non-zero-advantage fraction": mean("vcrl/nonzero_advantage_fraction"),
        "final bank size": steps[-1]["vcrl/bank_size"],
    }


def _model_card_section(args: VCRLConfig, summary: dict[str, float]) -> str:
    settings = {
        "kappa schedule (step, kappa)": args.threshold_schedule().pieces,
        "reward_range": args.reward_range,
        "dynamic_sampling": args.dynamic_sampling,
        "replay": args.replay,
        "replay_bank_size": args.replay_bank_size,
        "replay_momentum": args.replay_momentum,
        "replay_limit": args.replay_limit,
        "max_refill_rounds": args.max_refill_rounds,
        "num_generations": args.num_generations,
    }
    lines = ["## VCRL curriculum", "", "Trained with the `VCRLTrainer` of trl-vcrl "
             "([VCRL, arXiv 2509.19803](https://huggingface.co/papers/2509.19803)).", "", "| setting | value |",
             "|---|---|"]  # fmt: skip
    lines += [f"| {name} | `{value}` |" for name, value in settings.items()]
    if summary:
        lines += ["", "| curriculum statistic | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4g} |" for name, value in summary.items()]
    return "\n".join(lines) + "\n\n"
