"""`trl-vcrl demo`: a real VCRL training on CPU, offline, in a few minutes, with output a person reads at a glance.

SmolLM2-135M-Instruct (rebuilt offline by [`~trl_vcrl.pretrained.load_smollm2`]) learns reasoning-gym arithmetic with
LoRA: sums and differences of two one-digit numbers, given as the bare problem in plain text ("...: 4 - 1 ="), so that
the answer is the next few tokens. Short sequences keep a step at seconds on two CPU cores, and the untrained model
solves some prompts always, some sometimes and some never: groups of every reward variance from the first step. How
these settings were chosen, and what they reach, is in `docs/demo.md`.

One progress bar shows the numbers that matter; TRL's full metrics of every step stay in `trainer_state.json` of the
output directory. At the end a short summary, the curriculum plot and, with `compare=True`, the same run with GRPO
(`VCRLConfig(dynamic_sampling=False, replay=False)`) on the same seed and prompts, plotted against the rollouts each
generated.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from transformers import PrinterCallback, TrainerCallback
from transformers.utils import logging as transformers_logging

from . import metrics
from .data import BARE_PROMPT_TEMPLATE, arithmetic_curriculum_dataset
from .rewards import accuracy_reward

# Our choices for about six minutes on 2 CPU cores; how they were chosen: docs/demo.md.
DEMO_LEVELS = [1]  # keys of data.ARITHMETIC_LEVELS: sums and differences of two one-digit numbers
DEMO_DATASET_SIZE = 512
DEMO_STEPS = 24
DEMO_PROMPTS_PER_STEP = 8
DEMO_GENERATIONS = 4
DEMO_COMPLETION_LENGTH = 8  # the answer and a little more: room to wander off, which the policy learns not to do
DEMO_LEARNING_RATE = 1e-3
DEMO_KAPPA = 0.7
DEMO_LORA = dict(r=16, lora_alpha=32, target_modules="all-linear")
DEMO_TORCH_THREADS = 1  # two threads on two shared cores oversubscribe them and stall (docs/demo.md)
DEMO_MODEL_NAME = "SmolLM2-135M-Instruct"
GPU_RECIPE_COMMAND = "trl-vcrl train --config recipes/qwen3_0.6b_base_vcrl_lora.yaml"


def demo_dataset(seed: int = 0):
    """The demo's training prompts: `DEMO_LEVELS` of [`~trl_vcrl.data.arithmetic_curriculum_dataset`] as plain-text
    bare problems."""
    return arithmetic_curriculum_dataset(
        size=DEMO_DATASET_SIZE, seed=seed, levels=DEMO_LEVELS, conversational=False, template=BARE_PROMPT_TEMPLATE
    )


def demo_config(output_dir: str, max_steps: int = DEMO_STEPS, seed: int = 0, vcrl: bool = True, **overrides):
    """The demo's [`VCRLConfig`]; `vcrl=False` turns both curriculum switches off, which is exactly GRPO.

    `overrides` are further `VCRLConfig` fields, e.g. `save_strategy="steps"` (the notebooks' CPU path).
    """
    from .config import VCRLConfig
    from .testing import CPU_RUN_SETTINGS

    settings = dict(
        **CPU_RUN_SETTINGS,
        output_dir=output_dir,
        per_device_train_batch_size=DEMO_PROMPTS_PER_STEP * DEMO_GENERATIONS,
        num_generations=DEMO_GENERATIONS,
        max_completion_length=DEMO_COMPLETION_LENGTH,
        max_steps=max_steps,
        learning_rate=DEMO_LEARNING_RATE,
        # With G = 4 completions p is 0, 0.75 (1 or 3 right) or 1 (2 right): the paper's kappa = 0.8 would keep only
        # the 2-right groups. 0.7 drops the groups without a learning signal and keeps the others.
        kappa=DEMO_KAPPA,
        kappa_warmup_steps=max(1, max_steps // 3),
        max_refill_rounds=1,
        disable_tqdm=True,  # DemoProgress draws the one bar
        gradient_checkpointing=False,  # memory is no concern at this size; recomputing activations costs time
        seed=seed,
    )
    if not vcrl:
        settings.update(dynamic_sampling=False, replay=False)
    return VCRLConfig(**(settings | overrides))


def demo_peft_config():
    """LoRA on all linear layers, `DEMO_LORA`."""
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", **DEMO_LORA)


class DemoProgress(TrainerCallback):
    """One tqdm bar over the optimizer steps, showing the mean reward of the last few steps, the kept fraction of
    first-pass groups, the replay bank's size and the generated groups per trained group."""

    def __init__(self, description: str, window: int = 5):
        self.description = description
        self.window = window
        self.rewards: list[float] = []
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=state.max_steps, desc=self.description, unit="step", dynamic_ncols=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "reward" not in logs:  # the end-of-training summary row
            return
        self.rewards.append(logs["reward"])
        recent = self.rewards[-self.window :]
        postfix = {f"reward(last {len(recent)})": f"{sum(recent) / len(recent):.2f}"}
        if metrics.KEPT_FRACTION in logs:
            postfix["kept"] = f"{logs[metrics.KEPT_FRACTION]:.2f}"
            postfix["bank"] = int(logs[metrics.BANK_SIZE])
            postfix["gen/trained"] = f"{logs[metrics.ROLLOUTS_PER_TRAINED_GROUP]:.2f}"
        self.bar.set_postfix(postfix)

    def on_step_end(self, args, state, control, **kwargs):
        self.bar.update(state.global_step - self.bar.n)

    def on_train_end(self, args, state, control, **kwargs):
        self.bar.close()


def train_demo(model: str, output_dir: str, max_steps: int = DEMO_STEPS, seed: int = 0, vcrl: bool = True) -> list:
    """Train `model` (a local directory or Hub id) with the demo settings; write `trainer_state.json` to `output_dir`.

    Returns:
        `list[dict]`: the log history.
    """
    from .trainer import VCRLTrainer

    trainer = VCRLTrainer(
        model,
        accuracy_reward,
        args=demo_config(output_dir, max_steps, seed, vcrl),
        train_dataset=demo_dataset(seed),
        peft_config=demo_peft_config(),
    )
    trainer.remove_callback(PrinterCallback)  # the metric dict of every step; trainer_state.json keeps them all
    trainer.add_callback(DemoProgress("VCRL" if vcrl else "GRPO"))
    trainer.train()
    trainer.save_state()
    return trainer.state.log_history


def step_rewards(history: list[dict]) -> list[float]:
    """The training reward of every logged step."""
    return [entry["reward"] for entry in history if "reward" in entry]


def quarter_means(rewards: Sequence[float]) -> tuple[float, float]:
    """Mean of the first and of the last quarter of `rewards` (at least one value each)."""
    quarter = max(1, len(rewards) // 4)
    return sum(rewards[:quarter]) / quarter, sum(rewards[-quarter:]) / quarter


def generated_groups(history: list[dict], groups_per_step: int) -> float:
    """Prompt groups generated over a run logged every step: a run without `vcrl/rollouts_per_trained_group` (GRPO)
    generates exactly the groups it trains on."""
    return groups_per_step * sum(
        entry.get(metrics.ROLLOUTS_PER_TRAINED_GROUP, 1.0) for entry in history if "reward" in entry
    )


def summary_lines(name: str, history: list[dict]) -> list[str]:
    """What a run did, in a few lines: reward then and now, the curriculum, the rollouts spent."""

    rewards = step_rewards(history)
    first, last = quarter_means(rewards)
    groups = generated_groups(history, DEMO_PROMPTS_PER_STEP)
    trained = DEMO_PROMPTS_PER_STEP * len(rewards)
    lines = [
        f"{name}: reward {first:.2f} in the first quarter of steps -> {last:.2f} in the last ({last - first:+.2f})"
    ]
    curriculum = metrics.curriculum_summary(history)
    if curriculum:
        lines += [
            f"  curriculum: kept {curriculum['mean kept fraction']:.0%} of first-pass groups (p >= kappa, which ends at "
            f"{curriculum['final kappa']:g}); the others were replaced, per step, by",
            f"    {curriculum['mean groups from bank per step']:.1f} bank replays, "
            f"{curriculum['mean groups from refill per step']:.1f} fresh prompts and "
            f"{curriculum['mean groups from fallback per step']:.1f} below-kappa fallbacks; the bank ends with "
            f"{curriculum['final bank size']:.0f} prompts",
            f"  learning signal: {curriculum['mean non-zero-advantage fraction']:.0%} of trained groups had a non-zero "
            "advantage",
        ]
    lines.append(
        f"  rollouts: {groups * DEMO_GENERATIONS:.0f} completions generated ({groups:.0f} groups of {DEMO_GENERATIONS}) "
        f"to train on {trained} groups, {groups / trained:.2f} generated per trained group"
    )
    return lines


def run_demo(
    output_dir: str = "runs/demo",
    max_steps: int = DEMO_STEPS,
    seed: int = 0,
    compare: bool = False,
    model: str | None = None,
) -> str:
    """Train with VCRL (and with `compare=True` also with GRPO) on the demo settings, write the plots, and return the
    summary text.

    Args:
        output_dir (`str`, *optional*, defaults to `"runs/demo"`):
            VCRL's `trainer_state.json` and `curriculum.png`; with `compare`, GRPO's run in `grpo/` and `compare.png`.
        max_steps (`int`, *optional*, defaults to `DEMO_STEPS`):
            Optimizer steps of each run.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the prompts, the sampling and the LoRA initialisation; both runs of `compare` use it.
        compare (`bool`, *optional*, defaults to `False`):
            Also train GRPO and plot both reward curves against the rollouts generated.
        model (`str`, *optional*):
            Model directory or Hub id; `None` is SmolLM2-135M-Instruct from [`~trl_vcrl.pretrained.load_smollm2`].

    Returns:
        `str`: the summary.

    Turns off transformers' own progress bars (weight loading) for the process: the demo shows one bar.
    """
    from .plotting import compare_runs, plot_curriculum
    from .pretrained import load_smollm2

    transformers_logging.disable_progress_bar()  # weight loading bars; DemoProgress is the one bar
    model_name = DEMO_MODEL_NAME if model is None else Path(model).name
    model = model or load_smollm2()
    histories = {"VCRL": train_demo(model, output_dir, max_steps, seed, vcrl=True)}
    if compare:
        histories["GRPO"] = train_demo(model, os.path.join(output_dir, "grpo"), max_steps, seed, vcrl=False)

    setting = (
        f"{model_name} + LoRA, {max_steps} steps x {DEMO_PROMPTS_PER_STEP} prompts x {DEMO_GENERATIONS} completions "
        f"of <= {DEMO_COMPLETION_LENGTH} tokens, arithmetic levels {DEMO_LEVELS}, seed {seed}"
    )
    lines = ["", f"Demo: {setting}"]
    for name, history in histories.items():
        lines += summary_lines(name, history)
    curriculum_path = os.path.join(output_dir, "curriculum.png")
    plot_curriculum(histories["VCRL"], curriculum_path, title=f"VCRL demo: {model_name}, arithmetic")
    lines.append(f"Curriculum plot: {curriculum_path}")
    if compare:
        compare_path = os.path.join(output_dir, "compare.png")
        compare_runs(histories, x="rollouts", groups_per_step=DEMO_PROMPTS_PER_STEP, path=compare_path)
        lines.append(f"VCRL vs GRPO reward by rollouts generated: {compare_path}")
    states = [os.path.join(output_dir, "trainer_state.json")]
    if compare:
        states.append(os.path.join(output_dir, "grpo", "trainer_state.json"))
    lines.append(f"Full metrics of every step: {', '.join(states)}")
    lines.append(f"Train a real model on a GPU: {GPU_RECIPE_COMMAND}")
    return "\n".join(lines)
