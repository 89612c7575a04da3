"""Learning efficiency of GRPO, DAPO-style filtering and VCRL (paper and efficient): held-out accuracy against rollouts
generated.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/learning_efficiency.py

The task has a real spread of difficulty and learns within a CPU budget: addition of two numbers in three levels
(a < 10 and b < 10; a < 30 and b < 10; a and b < 100), verified by `trl_vcrl.rewards.accuracy_reward` (math-verify)
on the boxed answer. The model is the tiny local Qwen2 (`trl_vcrl.testing`), first warmed up by a short supervised
fine-tuning in this script, so it solves easy problems often, middle ones sometimes and hard ones rarely. Every method
starts from that same warm model and trains with the same settings on the same prompts; only the selection differs:

* GRPO: `VCRLConfig(dynamic_sampling=False, replay=False)` (tested identical to GRPOTrainer).
* DAPO filter: drop groups with zero reward variance (`kappa_schedule=["0:0.01"]`), refill with new prompts, no bank,
  no prediction (`efficient_sampling=False`).
* paper VCRL: the paper's schedule (kappa 0.3 for 20 steps, then 0.8), the replay bank and procedure
  (`efficient_sampling=False`).
* efficient VCRL: the same schedule and bank with the default `efficient_sampling=True`.

Each run stops once it has generated `--budget` rollouts (completions). Greedy accuracy on 300 held-out problems (100
per level) is measured every `--eval_every` rollouts. Reported per method, over seeds (mean and 95% t-interval): the
accuracy at the budget, the rollouts needed to first reach a target accuracy (80% of the way from the warm start to the
best method's final mean), and the curves. Writes docs/benchmarks/learning_efficiency.{json,md,png}.
"""

import argparse
import copy
import json
import math
import os
import platform
import random
import statistics
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from transformers import PrinterCallback, TrainerCallback  # noqa: E402

from trl_vcrl import VCRLConfig, VCRLTrainer, accuracy_reward  # noqa: E402
from trl_vcrl.testing import CPU_RUN_SETTINGS, build_tiny_model, build_tiny_tokenizer  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "learning_efficiency"
LEVELS = {1: (10, 10), 2: (30, 10), 3: (100, 100)}  # level: (bound of a, bound of b)
METHODS = {
    "GRPO": dict(dynamic_sampling=False, replay=False),
    "DAPO filter": dict(kappa_schedule=["0:0.01"], replay=False, efficient_sampling=False),
    "paper VCRL": dict(efficient_sampling=False),  # kappa 0.3 for 20 steps then 0.8, replay bank on
    "efficient VCRL": dict(),  # the defaults
}
MAX_NEW_TOKENS = 12
T_975 = {1: 12.71, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def problems(count: int, seed: int, levels: dict[int, tuple[int, int]] = LEVELS) -> list[dict]:
    """`count` addition problems, the levels in equal shares, as standard-format prompts with a gold answer."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        level = 1 + i % len(levels)
        a, b = rng.randrange(levels[level][0]), rng.randrange(levels[level][1])
        rows.append({"prompt": f"What is {a} + {b}? The answer is", "answer": str(a + b), "level": level})
    return rows


def warm_start(tokenizer, steps: int, seed: int, levels: dict[int, tuple[int, int]] = LEVELS):
    """Supervised warm-up: the tiny model learns the answer format and some arithmetic (easy levels best)."""
    torch.manual_seed(seed)
    model = build_tiny_model(tokenizer, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    examples = problems(steps * 64, seed=seed + 10_000, levels=levels)
    for step in range(steps):
        batch = examples[step * 64 : (step + 1) * 64]
        texts = [f"{row['prompt']} \\boxed{{{row['answer']}}}.{tokenizer.eos_token}" for row in batch]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right")
        labels = encoded.input_ids.masked_fill(encoded.attention_mask == 0, -100)
        for i, row in enumerate(batch):  # the loss is on the answer only
            labels[i, : len(tokenizer(row["prompt"]).input_ids)] = -100
        model(**encoded, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


@torch.no_grad()
def held_out_accuracy(model, tokenizer, rows: list[dict]) -> dict[str, float]:
    """Greedy accuracy overall and per level, scored by the same math-verify reward as training."""
    was_training = model.training
    model.eval()
    encoded = tokenizer([row["prompt"] for row in rows], return_tensors="pt", padding=True, padding_side="left")
    output = model.generate(
        **encoded, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    completions = tokenizer.batch_decode(output[:, encoded.input_ids.shape[1] :], skip_special_tokens=True)
    correct = accuracy_reward(completions, answer=[row["answer"] for row in rows])
    model.train(was_training)
    result = {"all": sum(correct) / len(rows)}
    for level in sorted({row["level"] for row in rows}):
        scores = [c for c, row in zip(correct, rows) if row["level"] == level]
        result[f"level {level}"] = sum(scores) / len(scores)
    return result


class RolloutBudget(TrainerCallback):
    """Counts generated rollouts from the logged metrics, evaluates every `eval_every` of them, stops at `budget`."""

    def __init__(self, tokenizer, held_out, rows_per_step: int, budget: int, eval_every: int):
        self.tokenizer, self.held_out = tokenizer, held_out
        self.rows_per_step, self.budget, self.eval_every = rows_per_step, budget, eval_every
        self.rollouts, self.seconds, self.next_eval = 0, 0.0, 0
        self.curve, self.steps = [], []

    def evaluate(self, model) -> None:
        accuracy = held_out_accuracy(model, self.tokenizer, self.held_out)
        self.curve.append({"rollouts": self.rollouts, "step": len(self.steps), "seconds": self.seconds, **accuracy})
        self.next_eval += self.eval_every

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.evaluate(model)

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if "loss" not in logs:
            return
        # GRPO generates one group per trained group; VCRL logs its own ratio, refill rounds included.
        self.rollouts += round(logs.get("vcrl/rollouts_per_trained_group", 1.0) * self.rows_per_step)
        self.seconds += logs["step_time"]  # generation and update, without the evaluations
        record = {key: logs.get(key) for key in ("reward", "frac_reward_zero_std", "step_time")}
        record.update({key: value for key, value in logs.items() if key.startswith("vcrl/")})
        # Trained groups with a non-zero advantage: VCRL logs it; GRPO trains on its first pass, all of it.
        record["nonzero_advantage"] = logs.get("vcrl/nonzero_advantage_fraction", 1 - logs["frac_reward_zero_std"])
        record["rollouts_per_trained_group"] = logs.get("vcrl/rollouts_per_trained_group", 1.0)
        self.steps.append(record)
        if self.rollouts >= self.next_eval or self.rollouts >= self.budget:
            self.evaluate(model)
        if self.rollouts >= self.budget:
            control.should_training_stop = True


def make_trainer(name: str, model, reward, rows: list[dict], tokenizer, callbacks, **settings) -> VCRLTrainer:
    """A CPU benchmark trainer: `settings` on top of logging every step, no saving, no reference model (beta 0)."""
    args = VCRLConfig(
        **CPU_RUN_SETTINGS,
        output_dir=f"/tmp/trl-vcrl-benchmarks/{name}",
        disable_tqdm=True,
        **settings,
    )
    trainer = VCRLTrainer(
        model,
        reward,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def run(method: str, settings: dict, warm_model, tokenizer, train, held_out, seed: int, cli) -> dict:
    """Train `method` (VCRLConfig `settings`) from the warm model until the rollout budget is spent."""
    rows_per_step = cli.prompts * cli.generations
    budget = RolloutBudget(tokenizer, held_out, rows_per_step, cli.budget, cli.eval_every)
    trainer = make_trainer(
        f"learning-{method}-{seed}",
        copy.deepcopy(warm_model),
        accuracy_reward,
        train,
        tokenizer,
        [budget],
        per_device_train_batch_size=rows_per_step,
        num_generations=cli.generations,
        max_completion_length=MAX_NEW_TOKENS,
        max_steps=10 * cli.budget // rows_per_step,  # an upper bound: the rollout budget stops the run
        learning_rate=cli.learning_rate,
        lr_scheduler_type="constant",
        seed=seed,
        **settings,
    )
    start = time.perf_counter()
    trainer.train()
    return {
        "curve": budget.curve,
        "steps": budget.steps,
        "optimizer_steps": len(budget.steps),
        "seconds": time.perf_counter() - start,
    }


def cost_to_reach(curve: list[dict], target: float, cost: str) -> float | None:
    """`cost` (rollouts, step or seconds) at the first evaluation with accuracy >= target, interpolated linearly."""
    for before, point in zip(curve, curve[1:]):
        if point["all"] >= target:
            if before["all"] >= target:
                return before[cost]
            fraction = (target - before["all"]) / (point["all"] - before["all"])
            return before[cost] + fraction * (point[cost] - before[cost])
    return None


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% t-interval."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=12288, help="rollouts (completions) per run")
    parser.add_argument(
        "--target_fraction",
        type=float,
        default=0.8,
        help="target: this far from the warm start to the best final mean",
    )
    parser.add_argument("--eval_every", type=int, default=512, help="rollouts between held-out evaluations")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per optimizer step")
    parser.add_argument("--generations", type=int, default=8, help="G")
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--warmup_steps", type=int, default=300, help="supervised warm-up steps (64 examples each)")
    cli = parser.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")

    tokenizer = build_tiny_tokenizer()
    warm_model = warm_start(tokenizer, cli.warmup_steps, seed=0)
    train, held_out = problems(4096, seed=1), problems(300, seed=2)
    initial = held_out_accuracy(warm_model, tokenizer, held_out)
    print(f"warm start: {initial}", flush=True)
    runs = {method: [] for method in METHODS}
    for seed in range(cli.seeds):
        for method in METHODS:
            result = run(method, METHODS[method], warm_model, tokenizer, train, held_out, seed, cli)
            runs[method].append(result)
            print(
                f"seed {seed} {method}: accuracy {result['curve'][0]['all']:.3f} -> {result['curve'][-1]['all']:.3f} "
                f"in {result['optimizer_steps']} steps, {result['seconds']:.0f} s",
                flush=True,
            )
    final = {method: [r["curve"][-1]["all"] for r in results] for method, results in runs.items()}
    best_final = max(statistics.fmean(values) for values in final.values())
    target = initial["all"] + cli.target_fraction * (best_final - initial["all"])
    summary = {}
    for method, results in runs.items():
        reached = [cost_to_reach(r["curve"], target, "rollouts") for r in results]
        steps = [cost_to_reach(r["curve"], target, "step") for r in results]
        reached_any = any(x is not None for x in reached)  # not any(reached): reaching it at 0 rollouts counts
        zero_std = [s["frac_reward_zero_std"] for r in results for s in r["steps"]]
        summary[method] = {
            "final_accuracy": mean_ci(final[method]),
            "final_accuracy_per_level": {
                level: statistics.fmean(r["curve"][-1][level] for r in results) for level in initial if level != "all"
            },
            "rollouts_to_target": mean_ci([x for x in reached if x is not None]) if reached_any else None,
            "steps_to_target": mean_ci([x for x in steps if x is not None]) if reached_any else None,
            "seeds_reaching_target": sum(x is not None for x in reached),
            "optimizer_steps": statistics.fmean(r["optimizer_steps"] for r in results),
            "first_pass_zero_variance_fraction": statistics.fmean(zero_std),
            "trained_nonzero_advantage_fraction": statistics.fmean(
                s["nonzero_advantage"] for r in results for s in r["steps"]
            ),
            "rollouts_per_trained_group": statistics.fmean(
                s["rollouts_per_trained_group"] for r in results for s in r["steps"]
            ),
            "seconds_per_step": statistics.fmean(s["step_time"] for r in results for s in r["steps"]),
            "seconds_per_run": statistics.fmean(r["seconds"] for r in results),
        }
    result = {
        "command": "HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/learning_efficiency.py "
        + " ".join(f"--{k} {v}" for k, v in vars(cli).items()),
        "machine": machine(),
        "settings": vars(cli),
        "warm_start_accuracy": initial,
        "target_accuracy": target,
        "summary": summary,
        "runs": runs,
    }
    write_results(result, OUT, plot, markdown)


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS=1; torch {torch.__version__}, "
        f"transformers {transformers.__version__}, TRL {trl.__version__}"
    )


def write_results(result: dict, out: Path, plot, markdown) -> None:
    """`result` as `out`.json, `plot(result, path)` as `out`.png, `markdown(result)` as `out`.md and on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def plot(result: dict, path: Path) -> None:
    figure = Figure(figsize=(11, 4))
    by_rollouts, by_steps = figure.subplots(1, 2, sharey=True)
    for method, results in result["runs"].items():
        points = min(len(r["curve"]) for r in results)  # seeds evaluate at the same rollout marks up to the budget
        stats = [mean_ci([r["curve"][i]["all"] for r in results]) for i in range(points)]
        low, mean, high = ([m - h for m, h in stats], [m for m, _ in stats], [m + h for m, h in stats])
        for ax, x in ((by_rollouts, "rollouts"), (by_steps, "step")):
            xs = [statistics.fmean(r["curve"][i][x] for r in results) for i in range(points)]
            ax.plot(xs, mean, label=method)
            ax.fill_between(xs, low, high, alpha=0.2)
    by_rollouts.axhline(result["target_accuracy"], color="grey", linestyle=":", label="target")
    by_rollouts.set_xlabel("rollouts generated")
    by_steps.set_xlabel("optimizer steps")
    by_rollouts.set_ylabel("held-out greedy accuracy")
    by_rollouts.legend()
    figure.suptitle("Addition, three levels; tiny Qwen2 after SFT warm-up (mean, 95% CI over seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        "# Learning efficiency: GRPO vs DAPO filter vs paper VCRL vs efficient VCRL",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}  ",
        f"Setup: tiny Qwen2 warmed up by {s['warmup_steps']} SFT steps on addition of three difficulty levels, then RL "
        f"with math-verify accuracy, {s['prompts']} prompts x G={s['generations']} per step, lr {s['learning_rate']}, "
        f"{s['budget']} rollouts per run, {s['seeds']} seeds. Held-out: 300 problems, greedy.",
        "",
        f"Warm start accuracy: {result['warm_start_accuracy']['all']:.3f} ("
        + ", ".join(f"{k} {v:.2f}" for k, v in result["warm_start_accuracy"].items() if k != "all")
        + f"). Target accuracy ({s['target_fraction']:.0%} of the way to the best final mean): "
        f"{result['target_accuracy']:.3f}.",
        "",
        "| method | accuracy at budget (95% CI) | per level | rollouts to target (95% CI) | optimizer steps to target "
        "| seeds reaching it | optimizer steps | zero-variance groups, first pass | s / run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, m in result["summary"].items():
        accuracy, half = m["final_accuracy"]
        levels = ", ".join(f"{v:.2f}" for v in m["final_accuracy_per_level"].values())
        reach, steps = (
            "not reached" if m[key] is None else "{:.0f} ± {:.0f}".format(*m[key])
            for key in ("rollouts_to_target", "steps_to_target")
        )
        lines.append(
            f"| {method} | {accuracy:.3f} ± {half:.3f} | {levels} | {reach} | {steps} | "
            f"{m['seeds_reaching_target']}/{s['seeds']} | {m['optimizer_steps']:.0f} | "
            f"{m['first_pass_zero_variance_fraction']:.0%} | {m['seconds_per_run']:.0f} |"
        )
    lines += [
        "",
        "Rollout efficiency (same runs, mean over all steps and seeds):",
        "",
        "| method | trained groups with non-zero advantage | rollouts per trained group | s / optimizer step |",
        "|---|---|---|---|",
    ]
    for method, m in result["summary"].items():
        lines.append(
            f"| {method} | {m['trained_nonzero_advantage_fraction']:.0%} | {m['rollouts_per_trained_group']:.2f} | "
            f"{m['seconds_per_step']:.3f} |"
        )
    lines += ["", "![accuracy vs rollouts](learning_efficiency.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
