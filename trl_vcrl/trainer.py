import functools
import itertools
import json
import logging
import math
import os
import random
import textwrap
import warnings
from collections import Counter, deque
from dataclasses import dataclass

import torch
from accelerate.utils import gather_object
from datasets import IterableDataset
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import get_config_model_id, is_async_callable

from . import metrics, rows
from .batch import grpo_advantages, merge_rows, pad_value
from .config import VCRLConfig
from .curriculum import (
    BatchSelection,
    Candidate,
    PlannedGroup,
    ReplayBank,
    group_scores,
    plan_refill,
    range_tolerance,
)
from .prediction import ANY_VARIANCE, PredictionTally, PromptHistory, RolloutScreen, refill_groups
from .rows import row_key
from .upstream import PROMPT_KEYS, RECOMPUTED_KEYS, check_batch_keys, check_trl, stop_input_grad_hook_leak

logger = logging.getLogger(__name__)

STATE_FILE = "vcrl_state.json"
# TRL's vLLM importance-sampling modes whose ratio is one value per sequence, shape (B, 1).
SEQUENCE_LEVEL_IS_MODES = ("sequence_mask", "sequence_truncate")


class VCRLTrainer(GRPOTrainer):
    """
    Trainer for VCRL, Variance-based Curriculum Reinforcement Learning ([arXiv 2509.19803](https://huggingface.co/papers/2509.19803)).

    A drop-in replacement for [`~trl.GRPOTrainer`] taking the same arguments. What differs, in training only, for
    each generation batch (one rollout step, the paper's "step"):

    - **Screen** (`efficient_sampling`, ours): in the first generation call, prompts predicted to give a zero-variance
      group are replaced before any rollout by dataset prompts not so predicted (or never seen); refill rounds take
      bank prompts first, then only dataset prompts predicted to pass `kappa`.
    - **Generate a round**: GRPOTrainer generates and scores the groups; each group gets its normalised reward
      variance `p`, and groups with `p < kappa` are dropped (with `efficient_sampling`, a passing group may fill a
      slot of another process).
    - **Plan the next round**: dropped groups are replaced by prompts from a replay bank of earlier high-variance
      prompts, re-rolled with the current policy, then by further dataset prompts, for at most `max_refill_rounds`
      extra generation calls; a replacement must pass `kappa` too.
    - **Update the bank**: passing groups enter it, replayed ones get their priority updated.
    - **Assemble**: still-missing slots take the best dropped groups, so the batch size never changes; advantages and
      `num_items_in_batch` are recomputed for the assembled batch, and the completions table logs what is trained.

    The bank, the prompt history, the samplers' states and the schedule position are saved with every checkpoint. The
    loss, evaluation (never filtered), vLLM, PEFT and distributed support are GRPOTrainer's. A plain
    [`~trl.GRPOConfig`] (or `args=None`) gets VCRL's defaults. Reward function errors stop every process at the same
    step.
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
        if args.dynamic_sampling and kwargs.get("environment_factory") and kwargs.get("train_dataset") is None:
            raise ValueError(
                "VCRL dynamic sampling replays and re-rolls training examples by their dataset row, but with "
                "environment_factory and no train_dataset every row is an empty placeholder and the environment picks "
                "the prompt. Pass a train_dataset whose rows identify the examples, or set dynamic_sampling=False and "
                "replay=False."
            )
        super().__init__(model, reward_funcs, args, *pos_args, **kwargs)
        stop_input_grad_hook_leak(self.model)
        if args.dynamic_sampling:
            check_trl(self)
            prompts_per_batch = args.generation_batch_size // args.num_generations
            if not isinstance(self.train_dataset, IterableDataset) and len(self.train_dataset) < prompts_per_batch:
                raise ValueError(
                    f"train_dataset has {len(self.train_dataset)} prompt(s), fewer than the {prompts_per_batch} one "
                    f"generation batch takes (generation_batch_size={args.generation_batch_size} / num_generations="
                    f"{args.num_generations}): no step would train. Use more prompts or a smaller batch."
                )
            if self._is_vlm:
                raise NotImplementedError(
                    "VCRL dynamic sampling supports text-only models; set dynamic_sampling=False."
                )
        self.reward_funcs = [
            self._stop_all_ranks_on_error(f, n) for f, n in zip(self.reward_funcs, self.reward_func_names)
        ]
        self._reward_errors: list[str] = []
        self.kappa_schedule = args.get_kappa_schedule()
        self.replay_bank = ReplayBank(
            capacity=args.replay_bank_size if args.replay else 0,
            momentum=args.replay_momentum,
            replay_limit=args.replay_limit,
            seed=args.seed,
        )
        self.refill_rows = RefillRows(self.train_dataset, seed=args.seed)
        self.prompt_history = PromptHistory(args.history_size)
        self.rollout_screen = RolloutScreen(args.skip_below, args.explore_floor, args.explore_doubling, seed=args.seed)
        self.prediction_tally = PredictionTally()
        self._step_counts = Counter()  # rollout-economy counts of the current step, logged and reset per step
        self._rollout_step = 0  # generation batches trained so far: the unit of the kappa schedule
        self._warned_fallback = False
        self._round_rewards = None

    # ---------------------------------------------------------------- rewards
    def _stop_all_ranks_on_error(self, reward_func, name: str):
        """Wrap a reward function so its failure is recorded instead of raised on this process alone.

        TRL gathers rewards across processes right after calling the reward functions: an exception on one process
        would leave the others waiting in that collective forever. The failed call returns `None` rewards, the
        gather completes, and `_calculate_rewards` raises the recorded error on every process.
        """
        if isinstance(reward_func, torch.nn.Module):
            return reward_func

        def check(output, completions):
            """TRL's own checks, done here so that a failure is recorded instead of raised on one process."""
            if not hasattr(output, "__len__") or len(output) != len(completions):
                count = len(output) if hasattr(output, "__len__") else type(output).__name__
                raise ValueError(f"returned {count} rewards for {len(completions)} completions (one per completion)")
            for row, value in enumerate(output):
                if value is not None and not _is_number(value):
                    raise ValueError(f"returned {value!r} for completion {row}; a reward is a number or None")
            return output

        def record(error: Exception, completions):
            self._reward_errors.append(f"reward function {name!r} failed: {type(error).__name__}: {error}")
            return [None] * len(completions)

        if is_async_callable(reward_func):

            async def guarded(*call_args, completions, **call_kwargs):
                try:
                    return check(await reward_func(*call_args, completions=completions, **call_kwargs), completions)
                except Exception as error:
                    return record(error, completions)
        else:

            def guarded(*call_args, completions, **call_kwargs):
                try:
                    return check(reward_func(*call_args, completions=completions, **call_kwargs), completions)
                except Exception as error:
                    return record(error, completions)

        return functools.wraps(reward_func)(guarded)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        errors = gather_object([self._reward_errors[:1]])  # every process joins, failed or not
        self._reward_errors.clear()
        failed = [(rank, error[0]) for rank, error in enumerate(errors) if error]
        if failed:
            rank, message = failed[0]
            raise RuntimeError(f"Process {rank} at step {self.state.global_step}: {message}. Training stops on all "
                               f"{len(errors)} process(es).")  # fmt: skip
        self._round_rewards = rewards_per_func  # gathered over processes, global row order
        return rewards_per_func

    # ---------------------------------------------------------------- the VCRL step
    def _generate_and_score_completions(self, inputs):
        if not (self.model.training and self.args.dynamic_sampling):
            return super()._generate_and_score_completions(inputs)
        return self._curriculum_batch(inputs)

    def _curriculum_batch(self, inputs: list[dict]) -> dict:
        """One VCRL generation batch: screen, generate, filter by `p >= kappa`, refill, update the bank, assemble."""
        G = self.num_generations
        kappa = self.kappa_schedule(self._rollout_step)
        efficient = self.args.efficient_sampling
        selection = BatchSelection(self.accelerator.num_processes, len(inputs) // G, kappa, pooled=efficient)
        planned = [PlannedGroup(row_key(row), row, "fresh") for row in gather_object(inputs[::G])]
        if efficient:
            planned = self._screen_first_round(planned, kappa)
        self._take_completion_logs()  # the previous batch's rows: replaced by this batch's trained rows
        rounds = [self._generate_round(planned, selection, kappa, round_index=0)]
        # TRL's own metrics and completions keep describing the first generation call: refill rounds replay
        # selected prompts, which would bias them. Their cost shows in the vcrl/ metrics.
        first_pass_metrics = {name: len(values) for name, values in self._metrics["train"].items()}
        while max(selection.missing()) > 0 and len(rounds) <= self.args.max_refill_rounds:
            planned = self._plan_next_round(selection, rounds, kappa)
            if not planned:  # no prompt left is worth generating: the fallback costs no rollouts
                break
            rounds.append(self._generate_round(planned, selection, kappa, round_index=len(rounds)))
        self._truncate_metrics(first_pass_metrics)
        selection.finish()
        self._warn_fallback_once(selection, kappa, len(rounds) - 1)
        self._update_bank(rounds, kappa)
        batch, advantages = self._assemble(rounds, selection)
        self._log_trained_completions(rounds, selection, advantages)
        self._log_curriculum(kappa, selection, rounds, advantages)
        self._rollout_step += 1
        return batch

    def _generate_round(
        self, planned: list[PlannedGroup], selection: BatchSelection, kappa: float, round_index: int
    ) -> "_Round":
        """Generate and score the planned groups (this process's share), score each group and offer it."""
        G, rank = self.num_generations, self.accelerator.process_index
        per_process = len(planned) // self.accelerator.num_processes
        local = planned[rank * per_process : (rank + 1) * per_process]
        # Whole groups of G identical rows, as TRL's RepeatSampler gives them.
        output = super()._generate_and_score_completions([dict(group.row) for group in local for _ in range(G)])
        check_batch_keys(output)
        combined = self._combined_rewards(self._round_rewards).tolist()
        scores = group_scores(combined, G, tuple(self.args.reward_range))
        candidates = [
            Candidate(
                process=g // per_process,
                round=round_index,
                index=g % per_process,
                p=p,
                source=group.source,
                key=group.key,
            )  # fmt: skip
            for g, (p, group) in enumerate(zip(scores, planned))
        ]
        if self.args.efficient_sampling:
            self._observe(planned, combined, scores, kappa)
        selection.offer(candidates)
        return _Round(output, self._round_rewards, per_process, candidates, planned, self._take_completion_logs())

    def _plan_next_round(self, selection: BatchSelection, rounds: list["_Round"], kappa: float) -> list[PlannedGroup]:
        """Bank prompts first, then dataset prompts, none of them generated earlier in this step.

        The paper's procedure: every process generates as many groups as the process missing most, each filling its
        own slots. Efficient sampling: the round is sized from the predicted pass rates of the prompts it draws, for
        what is missing over all processes, spread evenly (passing groups are pooled), and skips prompts predicted
        to fail.
        """
        seen = {c.key for r in rounds for c in r.candidates}
        if self.args.efficient_sampling:
            return self._plan_predicted_round(sum(selection.missing()), selection.groups_per_process, seen, kappa)
        per_process, from_bank = plan_refill(selection.missing(), self.replay_bank.available(exclude=seen))
        taken = self.replay_bank.take(sum(from_bank), exclude=seen)
        seen.update(key for key, _ in taken)  # not drawn again from the dataset in this round
        bank = iter(taken)
        planned = []
        for bank_groups in from_bank:
            for slot in range(per_process):
                if slot < bank_groups:
                    planned.append(PlannedGroup(*next(bank), "bank"))
                else:
                    key, row = self.refill_rows.draw(exclude=seen)
                    seen.add(key)
                    planned.append(PlannedGroup(key, row, "refill"))
        return planned

    # ---------------------------------------------------------------- rollout economy
    def _screen_first_round(self, planned: list[PlannedGroup], kappa: float) -> list[PlannedGroup]:
        """Replace the prompts predicted to give a zero-variance group before any rollout is spent on them, by dataset
        prompts worth generating. A prompt with no such replacement stays.

        The bank is left to the refill rounds, as in the paper: bank prompts placed here as well trained the same few
        prompts more often and learned less per rollout (docs/benchmarks/rollout_economy.md)."""
        seen = {group.key for group in planned}
        screened = []
        for group in planned:
            worth = self._worth_generating(group.key, kappa, first_call=True)
            replacement = None if worth else self._replacement(seen, kappa, first_call=True)
            if replacement is None:
                screened.append(self._predicted_group(group.key, group.row, group.source, kappa))
                continue
            self._step_counts["skipped_before_rollout"] += 1
            seen.add(replacement.key)
            screened.append(replacement)
        return screened

    def _plan_predicted_round(self, missing: int, cap: int, seen: set[str], kappa: float) -> list[PlannedGroup]:
        """Draw prompts until the round, sized by `refill_groups` from their predictions, is likely to fill
        `missing` slots; at most `cap` groups per process, the same number on every process."""
        processes = self.accelerator.num_processes
        unseen = self._step_counts["unseen_groups"]
        unseen_rate = self._step_counts["unseen_passed"] / unseen if unseen else 0.5
        planned = []
        while len(planned) < processes * cap:
            per_process = refill_groups(missing, [g.predicted for g in planned], processes, cap, unseen_rate)
            if len(planned) >= processes * per_process:
                break
            group = self._replacement(seen, kappa, first_call=False)
            if group is None:
                break
            seen.add(group.key)
            planned.append(group)
        while planned and len(planned) % processes:  # generation is collective: equal shares on every process
            key, row = self.refill_rows.draw(exclude=seen)
            seen.add(key)
            planned.append(self._predicted_group(key, row, "refill", kappa))
        return planned

    def _replacement(self, seen: set[str], kappa: float, first_call: bool) -> PlannedGroup | None:
        """In a refill round the best bank prompt; else a dataset prompt worth generating (`_worth_generating`); else
        `None` (none found in a few draws). The planned group carries its prediction for `kappa`."""
        if not first_call:
            for key, row in self.replay_bank.take(1, exclude=seen):
                return self._predicted_group(key, row, "bank", kappa)
        for _ in range(self.refill_rows.attempts):
            key, row = self.refill_rows.draw(exclude=seen)
            if key in seen:
                continue
            if self._worth_generating(key, kappa, first_call):
                return self._predicted_group(key, row, "refill", kappa)
            seen.add(key)  # skipped: not drawn again in this step
            self._step_counts["skipped_before_rollout"] += 1
        return None

    def _predicted_group(self, key: str, row: dict, source: str, kappa: float) -> PlannedGroup:
        """A planned group carrying its predicted chance of passing `kappa` (for refill sizing and the tally)."""
        return PlannedGroup(key, row, source, self.prompt_history.predict(key, self.num_generations, kappa))

    def _worth_generating(self, key: str, kappa: float, first_call: bool) -> bool:
        """Whether the prompt is worth a group (see `RolloutScreen`).

        The first call screens at `ANY_VARIANCE`: prompts with some variance but below `kappa` stay, because they carry
        the signal the policy learns from next and are the best fallback groups. It is also where skipped prompts are
        explored: its size is fixed, so exploring there costs no extra rollouts. Refill rounds exist only to pass
        `kappa`, so they take only prompts predicted to pass it, without exploring: when none is left, the step takes
        the fallback instead of paying rollouts for more groups below `kappa`.
        """
        G, screen = self.num_generations, self.rollout_screen
        if first_call:
            return screen.should_roll_out(self.prompt_history, key, G, ANY_VARIANCE, self._rollout_step)
        return screen.predicted_to_reach(self.prompt_history, key, G, kappa)

    def _observe(self, planned: list[PlannedGroup], combined: list[float], scores: list[float], kappa: float) -> None:
        """Record each generated group in the prompt history, and how good its prediction was."""
        G = self.num_generations
        low, high = self.args.reward_range
        for g, (group, p) in enumerate(zip(planned, scores)):
            valid = [r for r in combined[g * G : (g + 1) * G] if not math.isnan(r)]
            self.prediction_tally.record(group.predicted, p >= kappa)
            if group.predicted is None:
                self._step_counts["unseen_groups"] += 1
                self._step_counts["unseen_passed"] += p >= kappa
            if valid:
                mean01 = min(max((sum(valid) / len(valid) - low) / (high - low), 0.0), 1.0)
                self.prompt_history.observe(group.key, mean01, len(valid), self._rollout_step)

    def _truncate_metrics(self, first_pass_lengths: dict[str, int]) -> None:
        """Drop the TRL metrics that refill rounds appended after the first pass."""
        for name, values in list(self._metrics["train"].items()):
            del values[first_pass_lengths.get(name, 0) :]
            if not values:  # a metric only refill rounds produced: TRL averages every list it holds
                del self._metrics["train"][name]

    def _warn_fallback_once(self, selection: BatchSelection, kappa: float, refill_rounds: int) -> None:
        if selection.fallback and not self._warned_fallback:
            warnings.warn(
                f"VCRL: {len(selection.fallback)} group(s) below kappa={kappa} kept to fill the batch after "
                f"{refill_rounds} refill round(s) (step {self.state.global_step}). Raise max_refill_rounds or "
                f"replay_bank_size, or lower kappa, if this persists; vcrl/groups_from_fallback counts it. Warned once.",
                stacklevel=3,
            )
            self._warned_fallback = True

    def _update_bank(self, rounds: list["_Round"], kappa: float) -> None:
        """Replayed prompts get their new `p`; fresh and refill prompts that passed enter the bank."""
        if not self.args.replay:
            return
        for rnd in rounds:
            for candidate, group in zip(rnd.candidates, rnd.planned):
                if candidate.source == "bank":
                    self.replay_bank.update(candidate.key, candidate.p)
                elif candidate.p >= kappa:
                    self.replay_bank.add(candidate.key, group.row, candidate.p)

    def _combined_rewards(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        """The weighted-sum reward TRL builds advantages from, checked against `reward_range` (NaN if unscorable).

        Values past a range end by no more than float rounding (`range_tolerance`) count as that end.
        """
        combined = (rewards_per_func * self.reward_weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
        combined[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        low, high = self.args.reward_range
        tolerance = range_tolerance((low, high))
        outside = ((combined < low - tolerance) | (combined > high + tolerance)).nonzero()
        if len(outside):
            row = int(outside[0])
            parts = ", ".join(
                f"{name}={rewards_per_func[row, j].item():g} x weight {self.reward_weights[j].item():g}"
                for j, name in enumerate(self.reward_func_names)
            )
            raise ValueError(
                f"Combined reward {combined[row].item():g} of completion {row} (group {row // self.num_generations}) "
                f"at step {self.state.global_step} is outside reward_range={list(self.args.reward_range)} ({parts}). "
                f"VCRL never clips rewards: set reward_range to the true bounds of the weighted sum of your reward "
                f"functions."
            )
        return combined.clamp(low, high)  # only float rounding is left to absorb

    def _assemble(self, rounds: list["_Round"], selection: BatchSelection) -> tuple[dict, torch.Tensor]:
        """The local training batch made of this process's chosen groups, and the global advantages."""
        G, rank = self.num_generations, self.accelerator.process_index
        trained_rewards = torch.cat(
            [rounds[c.round].rewards[_global_rows(c, rounds, G)] for chosen in selection.chosen for c in chosen]
        )
        advantages = grpo_advantages(
            trained_rewards, self.reward_weights, G, self.scale_rewards, self.multi_objective_aggregation
        )
        first_batch_only = all(
            [(c.round, c.process, c.index) for c in chosen] == [(0, process, i) for i in range(len(chosen))]
            for process, chosen in enumerate(selection.chosen)
        )
        if first_batch_only:  # nothing swapped anywhere: TRL's batch and advantages are already right
            return rounds[0].output, advantages
        # Rows of groups that train on another process travel: every process gathers those rounds (collective).
        moved_rounds = sorted({c.round for c in selection.moved()})
        gathered = {r: self._gather_output(rounds[r].output) for r in moved_rounds}
        pieces = []
        for c in selection.chosen[rank]:
            if c.process == rank:
                source, start = rounds[c.round].output, c.index * G
            else:
                source, start = gathered[c.round], _global_rows(c, rounds, G).start
            pieces.append({k: v[start : start + G] for k, v in source.items() if k not in RECOMPUTED_KEYS})
        sequence_level = self.use_vllm and self.vllm_importance_sampling_mode in SEQUENCE_LEVEL_IS_MODES
        batch = merge_rows(pieces, self._tokenizer.pad_token_id, self.pad_to_multiple_of, sequence_level)
        rows = selection.groups_per_process * G
        batch["advantages"] = advantages[rank * rows : (rank + 1) * rows]
        loss_mask = batch["completion_mask"] * batch["tool_mask"] if "tool_mask" in batch else batch["completion_mask"]
        batch["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        return batch, advantages

    def _gather_output(self, output: dict) -> dict:
        """One generation call's row tensors from every process, padded to a common width, in global row order."""
        gathered = {}
        for key, tensor in output.items():
            if key in RECOMPUTED_KEYS:
                continue
            padded = self.accelerator.pad_across_processes(
                tensor, dim=1, pad_index=pad_value(key, self._tokenizer.pad_token_id), pad_first=key in PROMPT_KEYS
            )
            gathered[key] = self.accelerator.gather(padded)
        return gathered

    def _take_completion_logs(self) -> dict[str, list]:
        """Take and clear the completions-table rows TRL logged since the last call (global row order).

        TRL keeps one generation batch in these logs; VCRL refills them with the rows it trains.
        """
        logs = _completion_logs(self._logs)
        taken = {name: list(log) for name, log in logs.items()}
        for log in logs.values():
            log.clear()
        return taken

    def _log_trained_completions(self, rounds: list["_Round"], selection: BatchSelection, advantages) -> None:
        """Log the trained rows to TRL's completions table, with their advantages and where they came from."""
        G = self.num_generations
        fallback = {id(c) for c in selection.fallback}
        trained = [c for chosen in selection.chosen for c in chosen]
        logs = _completion_logs(self._logs)
        columns = {name for r in rounds for name in r.logs if name not in ("advantages", "extra/vcrl_source")}
        for position, c in enumerate(trained):
            rows = _global_rows(c, rounds, G)
            for name in columns:
                values = rounds[c.round].logs.get(name) or [None] * len(rounds[c.round].rewards)
                logs.setdefault(name, self._logs["extra"][name.removeprefix("extra/")]).extend(values[rows])
            self._logs["advantages"].extend(advantages[position * G : (position + 1) * G].tolist())
            self._logs["extra"]["vcrl_source"].extend(["fallback" if id(c) in fallback else c.source] * G)

    def _log_curriculum(
        self, kappa: float, selection: BatchSelection, rounds: list["_Round"], advantages: torch.Tensor
    ) -> None:
        logged = self._metrics["train"]
        first_p = [c.p for c in rounds[0].candidates]
        trained = [c for chosen in selection.chosen for c in chosen]
        fallback = {id(c) for c in selection.fallback}
        logged[metrics.KAPPA].append(kappa)
        logged[metrics.P_MEAN].append(sum(first_p) / len(first_p))
        for low, high in zip(metrics.P_HIST_EDGES, metrics.P_HIST_EDGES[1:]):
            in_bin = sum(low <= p < high or (high == 1.0 and p == 1.0) for p in first_p)
            logged[metrics.p_hist_name(low, high)].append(in_bin / len(first_p))
        logged[metrics.KEPT_FRACTION].append(sum(p >= kappa for p in first_p) / len(first_p))
        for source, name in (("bank", metrics.GROUPS_FROM_BANK), ("refill", metrics.GROUPS_FROM_REFILL)):
            logged[name].append(sum(c.source == source and id(c) not in fallback for c in trained))
        logged[metrics.GROUPS_FROM_FALLBACK].append(len(selection.fallback))
        logged[metrics.REFILL_ROUNDS].append(len(rounds) - 1)
        for name, value in self.replay_bank.stats().items():
            logged[metrics.PREFIX + name].append(value)
        logged[metrics.ROLLOUTS_PER_TRAINED_GROUP].append(sum(len(r.candidates) for r in rounds) / len(trained))
        nonzero = advantages.view(-1, self.num_generations).ne(0).any(dim=1).float().mean().item()
        logged[metrics.NONZERO_ADVANTAGE_FRACTION].append(nonzero)
        if self.args.efficient_sampling:
            logged[metrics.SKIPPED_BEFORE_ROLLOUT].append(self._step_counts["skipped_before_rollout"])
            logged[metrics.GROUPS_MOVED].append(len(selection.moved()))
            tally = self.prediction_tally.pop()
            if tally.accuracy is not None:  # TRL averages what each step appended: no value when nothing was predicted
                logged[metrics.PREDICTION_ACCURACY].append(tally.accuracy)
        self._step_counts.clear()

    # ---------------------------------------------------------------- checkpoints
    def train(self, resume_from_checkpoint=None, *train_args, **train_kwargs):
        if resume_from_checkpoint is True:  # transformers would take the newest folder, complete or not
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"No complete checkpoint in {self.args.output_dir} to resume from.")
        return super().train(resume_from_checkpoint, *train_args, **train_kwargs)

    def _save_checkpoint(self, model, trial):
        # Encoded on every process (a row that cannot be stored fails everywhere at once, not on one rank while
        # the others wait in super()), written before super(): it pushes the checkpoint to the Hub.
        state = json.dumps(rows.encode(self.curriculum_state_dict(), path="curriculum state"))
        if self.args.should_save:
            checkpoint_dir = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            os.makedirs(checkpoint_dir, exist_ok=True)
            _write_atomically(os.path.join(checkpoint_dir, STATE_FILE), state)
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
            self.load_curriculum_state_dict(rows.decode(json.load(f)))

    def curriculum_state_dict(self) -> dict:
        """Everything VCRL needs to resume exactly: bank, refill sampler state, schedule position."""
        return {
            "replay_bank": self.replay_bank.state_dict(),
            "refill_rows": self.refill_rows.state_dict(),
            "prompt_history": self.prompt_history.state_dict(),
            "rollout_screen": self.rollout_screen.state_dict(),
            "rollout_step": self._rollout_step,
            "kappa": self.kappa_schedule(self._rollout_step),
            "warned_fallback": self._warned_fallback,
        }

    def load_curriculum_state_dict(self, state: dict) -> None:
        """Restore `curriculum_state_dict()`; the bank follows the current settings (capacity, limit, `replay`)."""
        removed = self.replay_bank.load_state_dict(state["replay_bank"])
        if any(removed.values()):
            logger.warning(
                "Resumed replay bank follows the current settings (replay=%s, replay_bank_size=%d, replay_limit=%d): "
                "%d entries past the replay limit and %d over capacity left it; %d remain.",
                self.args.replay, self.replay_bank.capacity, self.replay_bank.replay_limit,
                removed["past_replay_limit"], removed["over_capacity"], len(self.replay_bank),
            )  # fmt: skip
        self.refill_rows.load_state_dict(state["refill_rows"])
        self.prompt_history.load_state_dict(state["prompt_history"])
        self.rollout_screen.load_state_dict(state["rollout_screen"])
        self._rollout_step = state["rollout_step"]
        self._warned_fallback = state["warned_fallback"]

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """TRL's model card (VCRL tags and citation) plus a section with the VCRL settings and curriculum statistics."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        path = os.path.join(self.args.output_dir, "README.md")
        with open(path) as f:
            card = f.read()
        section = _model_card_section(self.args, metrics.curriculum_summary(self.state.log_history))
        anchor = card.find("### Framework versions")
        card = card[:anchor] + section + card[anchor:] if anchor >= 0 else card + section
        with open(path, "w") as f:
            f.write(card)


class RefillRows:
    """Dataset rows for refill rounds, the same on every process (all processes draw the same global groups).

    A map-style dataset gives random rows from a seeded generator; an iterable (streaming) dataset gives the next
    rows of a second pass over the stream, so the dataloader's own pass is untouched. Both resume exactly.
    """

    def __init__(self, dataset, seed: int, attempts: int = 16):
        self.dataset, self.attempts = dataset, attempts
        self.streaming = isinstance(dataset, IterableDataset)
        self._rng = random.Random(seed)
        self._passes, self._position, self._stream = 0, 0, None

    def draw(self, exclude: set[str]) -> tuple[str, dict]:
        """A row whose key is not in `exclude` (a repeat only duplicates a group), `(key, row)`.

        Gives up avoiding repeats after `attempts` draws, so a dataset smaller than a batch still works.
        """
        for _ in range(self.attempts):
            row = self._next_row()
            key = row_key(row)
            if key not in exclude:
                break
        return key, row

    def _next_row(self) -> dict:
        if not self.streaming:
            return self.dataset[self._rng.randrange(len(self.dataset))]
        if self._stream is None:
            self._stream = itertools.islice(iter(self.dataset), self._position, None)
        for row in self._stream:
            self._position += 1
            return row
        if self._position == 0:
            raise ValueError("The train_dataset stream is empty: VCRL has no rows to refill the batch with.")
        self._passes, self._position, self._stream = self._passes + 1, 0, None  # next pass over the stream
        return self._next_row()

    def state_dict(self) -> dict:
        version, internal, gauss = self._rng.getstate()
        return {"rng_state": [version, list(internal), gauss], "passes": self._passes, "position": self._position}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng_state"]
        self._rng.setstate((version, tuple(internal), gauss))
        self._passes, self._position, self._stream = state["passes"], state["position"], None


@dataclass
class _Round:
    """One generation call of a VCRL step."""

    output: dict  # TRL's local training batch for this call
    rewards: torch.Tensor  # gathered rewards per function, global row order
    per_process: int  # groups each process generated
    candidates: list[Candidate]  # one per global group
    planned: list[PlannedGroup]  # the prompt of each global group
    logs: dict[str, list]  # TRL's completions-table rows of this call, global row order


def _global_rows(candidate: Candidate, rounds: list[_Round], group_size: int) -> slice:
    start = (candidate.process * rounds[candidate.round].per_process + candidate.index) * group_size
    return slice(start, start + group_size)


def _completion_logs(logs: dict) -> dict[str, deque]:
    """TRL's completions-table columns as one flat mapping (rewards and extra columns are nested per name)."""
    flat = {name: logs[name] for name in ("prompt", "completion", "advantages")}
    flat.update({f"rewards/{name}": log for name, log in logs["rewards"].items()})
    flat.update({f"extra/{name}": log for name, log in logs["extra"].items()})
    return flat


def _is_number(value) -> bool:
    """A reward TRL can put in a float tensor: a Python, numpy or 0-d torch number, not a string."""
    if isinstance(value, (str, bytes)):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest checkpoint folder that holds TRL's trainer state, which transformers writes after the model,
    optimizer and VCRL state: a run killed while saving leaves a newer, incomplete folder that must not be used."""
    if not os.path.isdir(output_dir):
        return None
    steps = {
        int(name.rsplit("-", 1)[1]): os.path.join(output_dir, name)
        for name in os.listdir(output_dir)
        if name.startswith(f"{PREFIX_CHECKPOINT_DIR}-") and name.rsplit("-", 1)[1].isdigit()
    }
    complete = [s for s, path in steps.items() if os.path.isfile(os.path.join(path, TRAINER_STATE_NAME))]
    return steps[max(complete)] if complete else None


def _write_atomically(path: str, text: str) -> None:
    """Write to a temporary file, then rename: a reader never sees a partial file under `path`."""
    temporary = f"{path}.tmp"
    with open(temporary, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def _vcrl_settings(args: VCRLConfig) -> str:
    return (
        f"kappa schedule {args.get_kappa_schedule().pieces}, reward_range={args.reward_range}, "
        f"replay_bank_size={args.replay_bank_size}, replay_limit={args.replay_limit}, "
        f"max_refill_rounds={args.max_refill_rounds}, efficient_sampling={args.efficient_sampling}"
    )


def _model_card_section(args: VCRLConfig, summary: dict[str, float]) -> str:
    # (value, whose choice): the paper's (arXiv 2509.19803) or ours where the paper is silent.
    settings = {
        "kappa schedule (rollout step, kappa)": (args.get_kappa_schedule().pieces, "paper §4.1: (0, 0.3), (20, 0.8)"),
        "reward_range": (args.reward_range, "ours: the paper treats 0/1 rewards"),
        "dynamic_sampling": (args.dynamic_sampling, "paper §3.1"),
        "replay": (args.replay, "paper §3.2"),
        "replay_bank_size": (args.replay_bank_size, "ours: not stated"),
        "replay_momentum": (args.replay_momentum, "paper §3.2: 0.9"),
        "replay_limit": (args.replay_limit, "paper §3.2: 2"),
        "max_refill_rounds": (args.max_refill_rounds, "ours: bounds the rollouts per step"),
        "efficient_sampling": (args.efficient_sampling, "ours: true skips prompts predicted to be uninformative"),
        "num_generations": (args.num_generations, "ours: not stated"),
    }
    lines = ["## VCRL curriculum", "", "Trained with the `VCRLTrainer` of trl-vcrl "
             "([VCRL, arXiv 2509.19803](https://huggingface.co/papers/2509.19803)).", "",
             "| setting | value | paper or ours |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {name} | `{value}` | {source} |" for name, (value, source) in settings.items()]
    if summary:
        lines += ["", "| curriculum statistic | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4g} |" for name, value in summary.items()]
    return "\n".join(lines) + "\n\n"
