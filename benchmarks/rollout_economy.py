"""Rollout economy: generated groups per trained group, and accuracy per rollout, of GRPO, the DAPO filter, the paper's
VCRL and efficient VCRL (the default `efficient_sampling=True`), side by side with the same seeds, prompts and start.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rollout_economy.py

Two tasks:

* Synthetic, known pass rates: a tiny random Qwen2 (`trl_vcrl.testing`, learning rate 0, so the pass rates stay
  known) on a small prompt set seen for many epochs. A third of the prompts are "easy" (reward always 1), a third
  "hard" (always 0), a third "coin" (reward 1 when a hash of the sampled completion falls under 0.5: pass rate 0.5).
  Only coin groups can pass `kappa`, so perfect foresight generates `1 / P(coin group passes kappa)` groups per trained
  group (computed exactly from the binomial; the measured pass fraction of coin groups is reported beside it).
* Real: the addition task of `benchmarks/learning_efficiency.py`, on a small training set that recurs over several
  epochs, in two variants (`REAL_TASKS`) where most of GRPO's first-pass groups have zero variance for different
  reasons: "weak" starts from a weak supervised warm start (few steps), so the threshold `kappa = 0.8` is nearly out
  of reach; "mixed" starts from a stronger warm start and adds a fourth level (three-digit sums) that the model never
  solves, so a quarter of the problems are out of reach while `kappa` is reachable on the easy levels, as on
  DAPO-Math for a small model. Every method trains from the same warm model until it has generated `--budget`
  rollouts; held-out greedy accuracy is measured every `--eval_every` rollouts, as in learning_efficiency.

The methods are learning_efficiency's: GRPO, the DAPO filter (no bank, no prediction), paper VCRL
(`efficient_sampling=False`) and efficient VCRL (the defaults); both VCRL with the paper's kappa schedule (0.3 for 20
rollout steps, then 0.8) and its replay bank.

Writes docs/benchmarks/rollout_economy.{json,md,png}.
"""

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
import warnings
import zlib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# This checkout's trl_vcrl (not another one installed in the environment), and learning_efficiency's helpers.
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import learning_efficiency  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from learning_efficiency import (  # noqa: E402
    LEVELS,
    cost_to_reach,
    held_out_accuracy,
    machine,
    make_trainer,
    mean_ci,
    problems,
    run,
    warm_start,
    write_results,
)
from matplotlib.figure import Figure  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from trl_vcrl import VCRLConfig, normalized_variance  # noqa: E402
from trl_vcrl.prediction import passing_counts  # noqa: E402
from trl_vcrl.testing import build_tiny_model, build_tiny_tokenizer  # noqa: E402

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(VCRLConfig)}
OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "rollout_economy"
METHODS = learning_efficiency.METHODS
PASS_RATES = {"easy": 1.0, "hard": 0.0, "coin": 0.5}  # synthetic prompt kinds and their known pass rates
REAL_TASKS = {  # name: addition levels (bounds of the two terms), supervised warm-up steps (64 examples each), title
    "weak": dict(levels=LEVELS, warmup_steps=130, title="addition from a weak warm start"),
    "mixed": dict(
        levels={**LEVELS, 4: (1000, 1000)},
        warmup_steps=300,
        title="addition with a quarter of the problems out of reach",
    ),
}


# ---------------------------------------------------------------------------------------------------- synthetic task
def known_rate_reward(completions, kind, **kwargs):
    """1 when a hash of the completion, scaled to [0, 1), falls under the pass rate of the prompt's kind."""
    return [float(zlib.crc32(c.encode()) / 2**32 < PASS_RATES[k]) for c, k in zip(completions, kind)]


class StepCounter(TrainerCallback):
    """The optimizer step in progress, so a reward function knows which step generated a group."""

    step = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.step += 1


def synthetic_run(method: str, tokenizer, seed: int, cli) -> dict:
    """Train `method` on the known-pass-rate prompts for `--epochs` epochs; per step, the logged metrics and the
    kind and normalised variance of every generated group."""
    G = cli.synthetic_generations
    counter = StepCounter()
    generated = []  # (step, kind, p) of every generated group

    def reward(completions, kind, **kwargs):
        rewards = known_rate_reward(completions, kind)
        for start in range(0, len(rewards), G):
            generated.append((counter.step, kind[start], normalized_variance(rewards[start : start + G])))
        return rewards

    reward.__name__ = "known_rate_reward"
    prompts = [
        {"prompt": f"Question {i}: what is {i} + {i % 7}?", "kind": kind}
        for i, kind in enumerate(list(PASS_RATES) * (cli.synthetic_prompts // len(PASS_RATES)))
    ]
    trainer = make_trainer(
        f"rollout-economy-{method}-{seed}",
        build_tiny_model(tokenizer, seed=seed),
        reward,
        prompts,
        tokenizer,
        [counter],
        per_device_train_batch_size=cli.synthetic_batch * G,
        num_generations=G,
        max_completion_length=8,
        max_steps=cli.epochs * len(prompts) // cli.synthetic_batch,
        learning_rate=0.0,
        seed=seed,
        **METHODS[method],
    )
    start = time.perf_counter()
    trainer.train()
    logs = [_economy_metrics(entry) for entry in trainer.state.log_history if "loss" in entry]
    return {"logs": logs, "generated": generated, "seconds": time.perf_counter() - start}


def _economy_metrics(logs: dict) -> dict:
    """The logged metrics this benchmark reads: VCRL's, the first call's zero-variance fraction and the step time."""
    return {
        key: value
        for key, value in logs.items()
        if key.startswith("vcrl/") or key in ("frac_reward_zero_std", "step_time")
    }


def coin_pass_probability(G: int, kappa: float) -> float:
    """Probability that a group of G fair-coin rewards passes kappa (exact binomial)."""
    return math.fsum(math.comb(G, k) for k in passing_counts(G, kappa)) / 2**G


def synthetic_summary(runs: dict[str, list[dict]], cli) -> dict:
    """Per method, over seeds and the steps after the first epoch: generated groups per trained group against
    perfect foresight, extra generation calls, skips, prediction accuracy, what was generated."""
    G, batch = cli.synthetic_generations, cli.synthetic_batch
    first_epoch = cli.synthetic_prompts // batch  # steps
    summary = {}
    for method, results in runs.items():
        logs = [entry for r in results for entry in r["logs"][first_epoch:]]
        groups = []  # (kind, p, kappa of its step) of the groups generated after the first epoch
        for r in results:
            kappas = [entry.get("vcrl/kappa") for entry in r["logs"]]  # GRPO logs none: it filters nothing
            groups += [(kind, p, kappas[step]) for step, kind, p in r["generated"] if step >= first_epoch]
        per_seed = [sum(step >= first_epoch for step, _, _ in r["generated"]) / (len(r["logs"][first_epoch:]) * batch)
                    for r in results]  # fmt: skip
        coin = [p >= kappa for kind, p, kappa in groups if kind == "coin" and kappa is not None]
        summary[method] = {
            "generated_per_trained_group": mean_ci(per_seed),
            "perfect_foresight": statistics.fmean(
                1 / coin_pass_probability(G, e["vcrl/kappa"]) if "vcrl/kappa" in e else 1.0 for e in logs
            ),
            "coin_group_pass_fraction": statistics.fmean(coin) if coin else None,
            "extra_generation_calls_per_step": statistics.fmean(e.get("vcrl/refill_rounds", 0) for e in logs),
            "skipped_before_rollout_per_step": statistics.fmean(e.get("vcrl/skipped_before_rollout", 0) for e in logs),
            "bank_groups_per_step": statistics.fmean(e.get("vcrl/groups_from_bank", 0) for e in logs),
            "prediction_accuracy": _mean_logged(logs, "vcrl/prediction_accuracy"),
            "uninformative_generated_fraction": sum(kind != "coin" for kind, _, _ in groups) / len(groups),
            "fallback_groups_per_step": statistics.fmean(e.get("vcrl/groups_from_fallback", 0) for e in logs),
            "trained_nonzero_advantage_fraction": statistics.fmean(
                e.get("vcrl/nonzero_advantage_fraction", 1 - e["frac_reward_zero_std"]) for e in logs
            ),
            "seconds_per_run": statistics.fmean(r["seconds"] for r in results),
            "by_kappa": by_kappa(logs),
        }
    return summary


def by_kappa(steps: list[dict]) -> dict[str, dict[str, float]]:
    """Per kappa of the schedule (every method but GRPO): the step count and the per-step means of the rollout-economy
    metrics over the steps that used it."""
    phases = {}
    for kappa in sorted({s["vcrl/kappa"] for s in steps if "vcrl/kappa" in s}):
        phase = [s for s in steps if s.get("vcrl/kappa") == kappa]
        phases[str(kappa)] = {"steps": len(phase)} | {
            name: statistics.fmean(s.get(f"vcrl/{name}", 0) for s in phase)
            for name in ("rollouts_per_trained_group", "refill_rounds", "kept_fraction", "groups_from_fallback",
                         "skipped_before_rollout")
        }  # fmt: skip
    return phases


def _mean_logged(logs: list[dict], name: str) -> float | None:
    """Mean of a metric over the steps that logged it (efficient VCRL logs prediction accuracy only when it
    predicted something), `None` when none did."""
    values = [entry[name] for entry in logs if name in entry]
    return statistics.fmean(values) if values else None


# ---------------------------------------------------------------------------------------------------- real task
def real_summary(runs: dict[str, list[dict]], initial: dict, cli) -> dict:
    """Per method: accuracy at the budget, rollouts and training seconds to the target, generated groups per trained
    group, extra generation calls, first-pass zero-variance fraction, skips and prediction accuracy."""
    first_epoch = cli.train_prompts // cli.prompts  # steps
    final = {method: [r["curve"][-1]["all"] for r in results] for method, results in runs.items()}
    curve_means = {method: [_curve_mean(r["curve"]) for r in results] for method, results in runs.items()}
    best_final = max(statistics.fmean(values) for values in final.values())
    target = initial["all"] + cli.target_fraction * (best_final - initial["all"])
    summary = {}
    for method, results in runs.items():
        steps = [s for r in results for s in r["steps"]]
        later = [s for r in results for s in r["steps"][first_epoch:]]
        to_target = {}
        for cost in ("rollouts", "seconds"):
            reached = [cost_to_reach(r["curve"], target, cost) for r in results]
            reached = [x for x in reached if x is not None]
            to_target[cost] = mean_ci(reached) if reached else None
        summary[method] = {
            "final_accuracy": mean_ci(final[method]),
            "final_rollouts": statistics.fmean(r["curve"][-1]["rollouts"] for r in results),
            "curve_mean_accuracy": mean_ci(curve_means[method]),
            "rollouts_to_target": to_target["rollouts"],
            "seconds_to_target": to_target["seconds"],
            "seeds_reaching_target": sum(cost_to_reach(r["curve"], target, "rollouts") is not None for r in results),
            "generated_per_trained_group": mean_ci(
                [statistics.fmean(s["rollouts_per_trained_group"] for s in r["steps"]) for r in results]
            ),
            "generated_per_trained_group_after_first_epoch": (
                statistics.fmean(s["rollouts_per_trained_group"] for s in later) if later else None
            ),
            "extra_generation_calls_per_step": statistics.fmean(s.get("vcrl/refill_rounds", 0) for s in steps),
            "first_pass_zero_variance_fraction": statistics.fmean(s["frac_reward_zero_std"] for s in steps),
            "skipped_before_rollout_per_step": statistics.fmean(
                s.get("vcrl/skipped_before_rollout", 0) for s in steps
            ),
            "bank_groups_per_step": statistics.fmean(s.get("vcrl/groups_from_bank", 0) for s in steps),
            "prediction_accuracy": _mean_logged(steps, "vcrl/prediction_accuracy"),
            "fallback_groups_per_step": statistics.fmean(s.get("vcrl/groups_from_fallback", 0) for s in steps),
            "trained_nonzero_advantage_fraction": statistics.fmean(s["nonzero_advantage"] for s in steps),
            "optimizer_steps": statistics.fmean(r["optimizer_steps"] for r in results),
            "seconds_per_step": statistics.fmean(s["step_time"] for s in steps),
            "seconds_per_run": statistics.fmean(r["seconds"] for r in results),
            "by_kappa": by_kappa(steps),
        }
    # Same seed, same start: efficient minus paper VCRL, at the budget and averaged over the evaluation marks.
    paired = [e - p for e, p in zip(final["efficient VCRL"], final["paper VCRL"])]
    paired_curve = [e - p for e, p in zip(curve_means["efficient VCRL"], curve_means["paper VCRL"])]
    return {
        "target_accuracy": target,
        "methods": summary,
        "paired_accuracy_difference": paired,
        "paired_curve_mean_difference": paired_curve,
    }


def _curve_mean(curve: list[dict]) -> float:
    """Mean held-out accuracy over a run's evaluation marks after the start (the same rollout marks for every method):
    accuracy at equal rollouts, averaged over budgets from `--eval_every` to `--budget`."""
    return statistics.fmean(point["all"] for point in curve[1:])


def targets(synthetic: dict, real_tasks: dict[str, dict]) -> list[dict]:
    """The issue's targets for efficient VCRL, each with the measured value and whether it is met; the real-task
    targets once per real task."""
    efficient = synthetic["efficient VCRL"]
    rows = [
        {
            "target": "synthetic: generated groups per trained group after the first epoch <= 1.3",
            "measured": efficient["generated_per_trained_group"][0],
            "met": efficient["generated_per_trained_group"][0] <= 1.3,
        },
        {
            "target": "synthetic: extra generation calls per step <= 1.2",
            "measured": efficient["extra_generation_calls_per_step"],
            "met": efficient["extra_generation_calls_per_step"] <= 1.2,
        },
    ]
    for task, real in real_tasks.items():
        methods = real["methods"]
        ratio = (
            methods["efficient VCRL"]["generated_per_trained_group"][0]
            / methods["DAPO filter"]["generated_per_trained_group"][0]
        )
        rows.append({"target": f"{task}: generated groups per trained group <= 0.7x the DAPO filter's (>= 30% fewer)",
                     "measured": ratio, "met": ratio <= 0.7})  # fmt: skip
        grpo, efficient_reach = methods["GRPO"]["rollouts_to_target"], methods["efficient VCRL"]["rollouts_to_target"]
        ratio = None if not grpo or not grpo[0] or efficient_reach is None else efficient_reach[0] / grpo[0]
        rows.append({"target": f"{task}: rollouts to target <= 0.7x GRPO's", "measured": ratio,
                     "met": ratio is not None and ratio <= 0.7})  # fmt: skip
        for name, paired in (("at the budget", "paired_accuracy_difference"),
                             ("averaged over the evaluation marks", "paired_curve_mean_difference")):  # fmt: skip
            difference = mean_ci(real[paired])
            rows.append({"target": f"{task}: accuracy at equal rollouts ({name}) not below paper VCRL's (paired 95% "
                         "CI of the difference reaches 0 or above)", "measured": difference,
                         "met": difference[0] + difference[1] >= 0})  # fmt: skip
        zero_variance = methods["GRPO"]["first_pass_zero_variance_fraction"]
        rows.append({"target": f"{task}: >= 50% of GRPO's first-pass groups have zero variance (task check)",
                     "measured": zero_variance, "met": zero_variance >= 0.5})  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------------- driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--synthetic_prompts", type=int, default=48, help="synthetic prompts (a third of each kind)")
    parser.add_argument("--synthetic_batch", type=int, default=8, help="synthetic prompts per step")
    parser.add_argument("--synthetic_generations", type=int, default=16, help="G on the synthetic task")
    parser.add_argument("--epochs", type=int, default=6, help="epochs over the synthetic prompts")
    parser.add_argument("--train_prompts", type=int, default=256, help="training problems of the real task")
    parser.add_argument("--real_tasks", nargs="+", choices=list(REAL_TASKS), default=list(REAL_TASKS),
                        help="real tasks to run (REAL_TASKS)")  # fmt: skip
    parser.add_argument("--budget", type=int, default=12288, help="rollouts (completions) per real-task run")
    parser.add_argument("--target_fraction", type=float, default=0.8,
                        help="target: this far from the warm start to the best final mean")  # fmt: skip
    parser.add_argument("--eval_every", type=int, default=512, help="rollouts between held-out evaluations")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per optimizer step on the real task")
    parser.add_argument("--generations", type=int, default=8, help="G on the real task")
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    cli = parser.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    tokenizer = build_tiny_tokenizer()
    result = {
        "command": "HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rollout_economy.py "
        + " ".join(f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(cli).items()),
        "machine": machine(),
        "settings": vars(cli),
    }
    start = time.perf_counter()
    runs = {method: [] for method in METHODS}
    for seed in range(cli.seeds):
        for method in METHODS:
            runs[method].append(synthetic_run(method, tokenizer, seed, cli))
            print(f"synthetic seed {seed} {method}: {runs[method][-1]['seconds']:.0f} s", flush=True)
    result["synthetic"] = {"summary": synthetic_summary(runs, cli), "runs": runs}

    result["real"] = {task: real_task(task, tokenizer, cli) for task in cli.real_tasks}
    result["total_seconds"] = time.perf_counter() - start
    result["targets"] = targets(result["synthetic"]["summary"], result["real"])
    write_results(result, OUT, plot, markdown)


def real_task(task: str, tokenizer, cli) -> dict:
    """Every method on the real task `task` (`REAL_TASKS`), from the same warm model, `--seeds` seeds each."""
    levels, warmup_steps = REAL_TASKS[task]["levels"], REAL_TASKS[task]["warmup_steps"]
    warm_model = warm_start(tokenizer, warmup_steps, seed=0, levels=levels)
    train, held_out = problems(cli.train_prompts, seed=1, levels=levels), problems(300, seed=2, levels=levels)
    initial = held_out_accuracy(warm_model, tokenizer, held_out)
    print(f"{task} warm start: {initial}", flush=True)
    runs = {method: [] for method in METHODS}
    for seed in range(cli.seeds):
        for method, settings in METHODS.items():
            runs[method].append(run(method, settings, warm_model, tokenizer, train, held_out, seed, cli))
            r = runs[method][-1]
            print(f"{task} seed {seed} {method}: accuracy {r['curve'][0]['all']:.3f} -> {r['curve'][-1]['all']:.3f} "
                  f"in {r['optimizer_steps']} steps, {r['seconds']:.0f} s", flush=True)  # fmt: skip
    return {"warm_start_accuracy": initial, **real_summary(runs, initial, cli), "runs": runs}


def plot(result: dict, path: Path) -> None:
    tasks = result["real"]
    figure = Figure(figsize=(5 * (1 + 2 * len(tasks)), 4))
    synthetic, *real_axes = figure.subplots(1, 1 + 2 * len(tasks))
    for method, results in result["synthetic"]["runs"].items():
        steps = min(len(r["logs"]) for r in results)
        ratio = [statistics.fmean(r["logs"][i].get("vcrl/rollouts_per_trained_group", 1.0) for r in results)
                 for i in range(steps)]  # fmt: skip
        synthetic.plot(range(1, steps + 1), ratio, label=method)
    s = result["settings"]
    kappas = [entry["vcrl/kappa"] for entry in result["synthetic"]["runs"]["paper VCRL"][0]["logs"]]
    foresight = [1 / coin_pass_probability(s["synthetic_generations"], kappa) for kappa in kappas]
    synthetic.plot(range(1, len(kappas) + 1), foresight, color="black", linestyle="--", label="VCRL perfect foresight")
    synthetic.axvline(s["synthetic_prompts"] / s["synthetic_batch"], color="grey", linestyle=":", label="epoch 1 ends")
    synthetic.set_xlabel("optimizer step")
    synthetic.set_ylabel("generated groups per trained group")
    synthetic.set_title("synthetic (mean over seeds)")
    synthetic.legend()
    for (task, real), by_rollouts, by_seconds in zip(tasks.items(), real_axes[::2], real_axes[1::2]):
        for method, results in real["runs"].items():
            points = min(len(r["curve"]) for r in results)  # seeds evaluate at the same rollout marks up to the budget
            mean = [statistics.fmean(r["curve"][i]["all"] for r in results) for i in range(points)]
            for ax, x in ((by_rollouts, "rollouts"), (by_seconds, "seconds")):
                ax.plot(
                    [statistics.fmean(r["curve"][i][x] for r in results) for i in range(points)], mean, label=method
                )
        for ax, label in ((by_rollouts, "rollouts generated"), (by_seconds, "training seconds (generation + update)")):
            ax.axhline(real["target_accuracy"], color="grey", linestyle=":", label="target")
            ax.set_xlabel(label)
            ax.set_ylabel("held-out greedy accuracy")
            ax.set_title(f"{task}: {REAL_TASKS[task]['title']}", fontsize=9)
        by_rollouts.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _ci(value, digits: int = 3) -> str:
    if value is None:
        return "not reached"
    mean, half = value
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def _maybe(value, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def phase_table(summary: dict, steps: str) -> list[str]:
    """Markdown lines: the VCRL methods' rollout economy per kappa of the schedule."""
    lines = [
        "",
        f"By kappa phase ({steps}, per step, mean over seeds):",
        "",
        "| method | kappa | steps (all seeds) | generated groups / trained group | extra generation calls | first-call groups "
        "passing kappa | fallback groups | skipped before rollout |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, m in summary.items():
        for kappa, phase in m["by_kappa"].items():
            lines.append(
                f"| {method} | {kappa} | {phase['steps']} | {phase['rollouts_per_trained_group']:.2f} | "
                f"{phase['refill_rounds']:.2f} | {phase['kept_fraction']:.0%} | {phase['groups_from_fallback']:.2f} | "
                f"{phase['skipped_before_rollout']:.1f} |"
            )
    return lines


def real_section(task: str, real: dict, s: dict) -> list[str]:
    """Markdown lines: one real task's results."""
    warm, task_settings = real["warm_start_accuracy"], REAL_TASKS[task]
    levels = ", ".join(f"{level}: a < {a}, b < {b}" for level, (a, b) in task_settings["levels"].items())
    lines = [
        "",
        f'## Real task "{task}": {task_settings["title"]}',
        "",
        f"learning_efficiency's addition task a + b ({len(task_settings['levels'])} levels in equal shares, {levels}; "
        f"math-verify reward), tiny Qwen2 after {task_settings['warmup_steps']} supervised warm-up steps on the same "
        f"levels, {s['train_prompts']} training problems (one epoch = "
        f"{s['train_prompts'] // s['prompts']} steps), {s['prompts']} prompts x G={s['generations']} per step, lr "
        f"{s['learning_rate']}, {s['budget']} rollouts per run, {s['seeds']} seeds. Held-out: 300 problems, greedy, "
        f"every {s['eval_every']} rollouts. Training seconds are TRL's `step_time` summed (generation and update, "
        "evaluations excluded), on a shared machine.",
        "",
        f"Warm start accuracy: {warm['all']:.3f} ("
        + ", ".join(f"{k} {v:.2f}" for k, v in warm.items() if k != "all")
        + f"). Target accuracy ({s['target_fraction']:.0%} of the way to the best final mean): "
        f"{real['target_accuracy']:.3f}.",
        "",
        "| method | accuracy at budget (95% CI) | mean accuracy over the evaluation marks (95% CI) "
        "| rollouts at budget | rollouts to target (95% CI) "
        "| training s to target (95% CI) | seeds reaching it | generated groups / trained group (95% CI) "
        "| same, after epoch 1 | extra generation calls / step | zero-variance groups, first call |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, m in real["methods"].items():
        lines.append(
            f"| {method} | {_ci(m['final_accuracy'])} | {_ci(m['curve_mean_accuracy'])} | {m['final_rollouts']:.0f} | "
            f"{_ci(m['rollouts_to_target'], 0)} | {_ci(m['seconds_to_target'], 1)} | "
            f"{m['seeds_reaching_target']}/{s['seeds']} | {_ci(m['generated_per_trained_group'], 2)} | "
            f"{_maybe(m['generated_per_trained_group_after_first_epoch'])} | {m['extra_generation_calls_per_step']:.2f} | "
            f"{m['first_pass_zero_variance_fraction']:.0%} |"
        )
    lines += [
        "",
        "| method | skipped before rollout / step | trained groups replayed from the bank / step | prediction accuracy "
        "| fallback groups / step | trained groups with non-zero advantage | optimizer steps | s / optimizer step "
        "| s / run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, m in real["methods"].items():
        lines.append(
            f"| {method} | {m['skipped_before_rollout_per_step']:.1f} | {m['bank_groups_per_step']:.1f} | "
            f"{_maybe(m['prediction_accuracy'], '.0%')} | {m['fallback_groups_per_step']:.2f} | "
            f"{m['trained_nonzero_advantage_fraction']:.0%} | {m['optimizer_steps']:.0f} | "
            f"{m['seconds_per_step']:.3f} | {m['seconds_per_run']:.0f} |"
        )
    lines += phase_table(real["methods"], "all steps")
    lines += [
        "",
        "Efficient minus paper VCRL, paired by seed: accuracy at the budget "
        f"{_ci(mean_ci(real['paired_accuracy_difference']))}; accuracy averaged over the evaluation marks (equal "
        f"rollouts, every {s['eval_every']} up to the budget) {_ci(mean_ci(real['paired_curve_mean_difference']))}.",
    ]
    return lines


def markdown(result: dict) -> str:
    s, synthetic, real_tasks = result["settings"], result["synthetic"]["summary"], result["real"]
    lines = [
        "# Rollout economy: GRPO vs DAPO filter vs paper VCRL vs efficient VCRL",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}; whole run {result['total_seconds'] / 60:.0f} min.  ",
        "VCRL methods use the paper's kappa schedule (0.3 for 20 rollout steps, then 0.8) and replay bank; the DAPO "
        "filter drops zero-variance groups (kappa 0.01) without a bank; efficient VCRL is the default "
        f"`efficient_sampling=True` (skip_below {_DEFAULTS['skip_below']}, explore_floor {_DEFAULTS['explore_floor']}, "
        f"explore_doubling {_DEFAULTS['explore_doubling']}), the others run with "
        "`efficient_sampling=False`.",
        "",
        "## Synthetic task: known pass rates",
        "",
        f"Tiny random Qwen2, learning rate 0 (pass rates stay known), {s['synthetic_prompts']} prompts (a third "
        f"always right, a third always wrong, a third a fair coin per completion), {s['synthetic_batch']} prompts x "
        f"G={s['synthetic_generations']} per step, {s['epochs']} epochs, {s['seeds']} seeds. Measured after the first "
        f"epoch (steps {s['synthetic_prompts'] // s['synthetic_batch'] + 1} onwards). Perfect foresight generates "
        "only coin prompts: 1 / P(coin group passes kappa), from the exact binomial, averaged over the steps' kappa "
        "(1.00 for GRPO, which trains whatever it generates).",
        "",
        "| method | generated groups / trained group (95% CI) | perfect foresight | extra generation calls / step "
        "| skipped before rollout / step | trained groups replayed from the bank / step | prediction accuracy "
        "| uninformative share of generated groups | fallback groups / step | trained groups with non-zero advantage "
        "| coin groups passing kappa | s / run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, m in synthetic.items():
        lines.append(
            f"| {method} | {_ci(m['generated_per_trained_group'], 2)} | {m['perfect_foresight']:.2f} | "
            f"{m['extra_generation_calls_per_step']:.2f} | {m['skipped_before_rollout_per_step']:.1f} | "
            f"{m['bank_groups_per_step']:.1f} | {_maybe(m['prediction_accuracy'], '.0%')} | "
            f"{m['uninformative_generated_fraction']:.0%} | {m['fallback_groups_per_step']:.2f} | "
            f"{m['trained_nonzero_advantage_fraction']:.0%} | {_maybe(m['coin_group_pass_fraction'], '.0%')} | "
            f"{m['seconds_per_run']:.0f} |"
        )
    lines += phase_table(synthetic, "after the first epoch")
    for task, real in real_tasks.items():
        lines += real_section(task, real, s)
    lines += [
        "",
        "## Targets (efficient VCRL)",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for row in result["targets"]:
        measured = row["measured"]
        shown = _ci(measured) if isinstance(measured, (list, tuple)) else _maybe(measured)
        lines.append(f"| {row['target']} | {shown} | {'yes' if row['met'] else 'no'} |")
    lines += ["", "![rollout economy](rollout_economy.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
