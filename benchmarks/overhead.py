"""Bookkeeping overhead of VCRLTrainer over GRPOTrainer per optimizer step, at equal generation work.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/overhead.py

Three arms train the same tiny random model (trl_vcrl.testing.build_tiny_model) on the same prompts with the same seed:

* GRPOTrainer: TRL's trainer with a GRPOConfig.
* VCRL off+off: VCRLTrainer with dynamic_sampling=False, replay=False (the ablation that must equal GRPO).
* VCRL kappa=0: VCRLTrainer with the whole curriculum path on (scoring, selection, bank updates, advantage
  recomputation, metrics) but `kappa_schedule=["0:0.0"]`, so every group passes and no refill round runs: exactly the
  generation work of GRPO, plus VCRL's bookkeeping.
* VCRL kappa=0.8: the paper's threshold from step 0, so groups are dropped and refill rounds run (more generation
  work by design; its step time is not comparable, its bookkeeping includes merging rows of several calls).

Two measurements:

1. CPU time per optimizer step and arm (median and IQR over steps; process CPU time, single-threaded, so other load
   on the machine counts less than in wall time), arms interleaved round by round so drift hits all arms alike.
2. Time spent in VCRL's own code per step in the curriculum arms: the time of `VCRLTrainer._generate_and_score_completions`
   minus the time of the GRPOTrainer calls it makes (measured by wrapping GRPOTrainer's method in this process only).
   Divided by the median GRPOTrainer step time this is the bookkeeping overhead.

The tiny model makes generation and the backward pass very cheap, so the overhead here is an upper bound of what a real
model sees. Writes docs/benchmarks/overhead.json (per-step numbers) and overhead.md (table, command, machine).
"""

import argparse
import json
import os
import platform
import random
import statistics
import time
import warnings
import zlib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import PrinterCallback, TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from trl_vcrl import VCRLConfig, VCRLTrainer  # noqa: E402
from trl_vcrl.testing import CPU_RUN_SETTINGS, build_tiny_model, build_tiny_tokenizer  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "overhead"
ARMS = ("GRPOTrainer", "VCRL off+off", "VCRL kappa=0", "VCRL kappa=0.8")
CURRICULUM_ARMS = ("VCRL kappa=0", "VCRL kappa=0.8")


def half_solvable_reward(completions, **kwargs):
    """Binary reward from a hash of each completion: groups have a spread of p, as a real verifier gives."""
    return [float(zlib.crc32(str(c).encode()) % 2) for c in completions]


def dataset(size: int = 256) -> Dataset:
    return Dataset.from_list([{"prompt": f"Question {i}: what is {i} + {i % 7}?"} for i in range(size)])


class StepTimer(TrainerCallback):
    """Process CPU time per optimizer step: unlike wall time, it does not count time other processes hold the CPU."""

    def __init__(self):
        self.times, self._start = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.process_time() - self._start)


class InnerTimer:
    """CPU time of VCRL's `_generate_and_score_completions` and of the GRPOTrainer calls it makes via super()."""

    def __init__(self):
        self.grpo = []  # seconds in GRPOTrainer generation+scoring, per VCRL step (summed over its calls)
        self.vcrl = []  # seconds in VCRLTrainer._generate_and_score_completions, per step
        self._grpo_method = GRPOTrainer._generate_and_score_completions
        self._vcrl_method = VCRLTrainer._generate_and_score_completions
        timer = self

        # The wrappers keep GRPOTrainer's parameter names: VCRLTrainer checks them against the TRL it supports.
        def grpo_timed(self, inputs):
            start = time.process_time()
            try:
                return timer._grpo_method(self, inputs)
            finally:
                if isinstance(self, VCRLTrainer):
                    timer.grpo[-1] += time.process_time() - start

        def vcrl_timed(self, inputs):
            timer.grpo.append(0.0)
            start = time.process_time()
            result = timer._vcrl_method(self, inputs)
            timer.vcrl.append(time.process_time() - start)
            return result

        GRPOTrainer._generate_and_score_completions = grpo_timed
        VCRLTrainer._generate_and_score_completions = vcrl_timed

    def bookkeeping(self) -> list[float]:
        return [total - inner for total, inner in zip(self.vcrl, self.grpo)]


def run_arm(arm: str, steps: int, groups: int, generations: int, seed: int, output_dir: str) -> list[float]:
    settings = dict(
        **CPU_RUN_SETTINGS,
        output_dir=output_dir,
        per_device_train_batch_size=groups * generations,
        num_generations=generations,
        max_completion_length=16,
        max_steps=steps,
        learning_rate=1e-4,
        seed=seed,
        disable_tqdm=True,
    )
    if arm == "GRPOTrainer":
        trainer_class, args = GRPOTrainer, GRPOConfig(**settings)
    elif arm == "VCRL off+off":
        trainer_class, args = VCRLTrainer, VCRLConfig(**settings, dynamic_sampling=False, replay=False)
    elif arm == "VCRL kappa=0":
        trainer_class, args = VCRLTrainer, VCRLConfig(**settings, kappa_schedule=["0:0.0"])
    else:
        trainer_class, args = VCRLTrainer, VCRLConfig(**settings, kappa_warmup_steps=0)
    tokenizer = build_tiny_tokenizer()
    timer = StepTimer()
    trainer = trainer_class(
        build_tiny_model(tokenizer, seed=seed),
        half_solvable_reward,
        args=args,
        train_dataset=dataset(),
        processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.remove_callback(PrinterCallback)  # per-step log dicts would drown the progress lines
    trainer.train()
    return timer.times[1:]  # the first step pays one-off costs (allocations, lazy imports)


def bootstrap_ratio_ci(values: list[float], reference: list[float], samples: int = 2000) -> list[float]:
    """95% bootstrap interval of median(values) / median(reference) - 1 (steps resampled with replacement)."""
    rng = random.Random(0)
    ratios = sorted(
        statistics.median(rng.choices(values, k=len(values)))
        / statistics.median(rng.choices(reference, k=len(reference)))
        - 1
        for _ in range(samples)
    )
    return [ratios[int(0.025 * samples)], ratios[int(0.975 * samples)]]


def summary(values: list[float]) -> dict:
    q1, median, q3 = statistics.quantiles(values, n=4)
    return {"median": median, "q1": q1, "q3": q3, "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; each runs every arm once")
    parser.add_argument("--steps", type=int, default=21, help="optimizer steps per arm and round (first dropped)")
    parser.add_argument("--groups", type=int, default=8, help="prompts per generation batch")
    parser.add_argument("--generations", type=int, default=8, help="G, completions per prompt")
    parser.add_argument("--output_dir", default="/tmp/trl-vcrl-overhead")
    cli = parser.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")

    inner = InnerTimer()
    step_times = {arm: [] for arm in ARMS}
    bookkeeping = {arm: [] for arm in CURRICULUM_ARMS}
    for round_index in range(cli.rounds):
        order = ARMS if round_index % 2 == 0 else ARMS[::-1]
        for arm in order:
            inner_before = len(inner.vcrl)
            times = run_arm(arm, cli.steps, cli.groups, cli.generations, seed=round_index, output_dir=cli.output_dir)
            step_times[arm] += times
            if arm in CURRICULUM_ARMS:  # the first step is dropped, as for the step times
                bookkeeping[arm] += inner.bookkeeping()[inner_before + 1 :]
            print(f"round {round_index} {arm}: median {statistics.median(times) * 1e3:.1f} ms/step", flush=True)

    grpo_median = statistics.median(step_times["GRPOTrainer"])
    result = {
        "command": "HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/overhead.py "
        + " ".join(f"--{k} {v}" for k, v in vars(cli).items() if k != "output_dir"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS=1; "
        f"torch {torch.__version__}, transformers {transformers.__version__}, TRL {trl.__version__}",
        "setup": {"groups": cli.groups, "generations": cli.generations, "max_completion_length": 16},
        "step_seconds": {arm: summary(times) for arm, times in step_times.items()},
        "step_overhead_vs_grpo": {
            arm: statistics.median(step_times[arm]) / grpo_median - 1 for arm in ("VCRL off+off", "VCRL kappa=0")
        },
        "step_overhead_vs_grpo_ci95": {
            arm: bootstrap_ratio_ci(step_times[arm], step_times["GRPOTrainer"])
            for arm in ("VCRL off+off", "VCRL kappa=0")
        },
        "bookkeeping_seconds": {arm: summary(times) for arm, times in bookkeeping.items()},
        "bookkeeping_fraction_of_grpo_step": {
            arm: statistics.median(times) / grpo_median for arm, times in bookkeeping.items()
        },
        "raw": {"step_seconds": step_times, "bookkeeping_seconds": bookkeeping},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(result, indent=1))
    OUT.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    ms = 1e3
    lines = [
        "# VCRL bookkeeping overhead vs GRPOTrainer",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}  ",
        f"Setup: tiny random Qwen2, {result['setup']['groups']} prompts x G={result['setup']['generations']} per "
        f"step, {result['setup']['max_completion_length']} new tokens, hash reward (spread of p); arms interleaved.",
        "",
        "| arm | median CPU ms / step | IQR (ms) | steps | vs GRPOTrainer (95% bootstrap CI) |",
        "|---|---|---|---|---|",
    ]
    for arm, s in result["step_seconds"].items():
        change, ci = result["step_overhead_vs_grpo"].get(arm), result["step_overhead_vs_grpo_ci95"].get(arm)
        note = {"GRPOTrainer": "reference", "VCRL kappa=0.8": "more generation (refill rounds)"}.get(arm)
        lines.append(
            f"| {arm} | {s['median'] * ms:.1f} | {s['q1'] * ms:.1f}-{s['q3'] * ms:.1f} | {s['n']} | "
            + (f"{note} |" if change is None else f"{change:+.1%} ({ci[0]:+.1%} to {ci[1]:+.1%}) |")
        )
    lines += [
        "",
        "Time in VCRL's own code per step (its `_generate_and_score_completions` minus the GRPOTrainer calls inside "
        "it), against the median GRPOTrainer step (target: under 2%):",
        "",
        "| arm | median ms / step | IQR (ms) | fraction of a GRPOTrainer step |",
        "|---|---|---|---|",
    ]
    for arm, b in result["bookkeeping_seconds"].items():
        lines.append(
            f"| {arm} | {b['median'] * ms:.2f} | {b['q1'] * ms:.2f}-{b['q3'] * ms:.2f} | "
            f"**{result['bookkeeping_fraction_of_grpo_step'][arm]:.2%}** |"
        )
    lines += [
        "",
        "Differences in whole-step time between arms are at the level of the run-to-run noise of a shared 2-core "
        "machine (compare VCRL off+off, which runs no VCRL code, with GRPOTrainer); the bookkeeping time is the direct "
        "measurement. The tiny model makes a step very cheap, so real models see a smaller fraction.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
