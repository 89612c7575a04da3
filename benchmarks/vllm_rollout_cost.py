"""Rollout cost of VCRL against GRPO with vLLM colocate on CPU: generation calls and wall time per optimizer step.

    .venv-vllm/bin/python benchmarks/vllm_rollout_cost.py            # needs the vLLM environment: bash .ci/vllm_env.sh

Three variants train the same tiny random model (trl_vcrl.testing.build_tiny_model) on the same prompts, half of which have zero
reward variance (every completion scores 1), the other half a fair-coin reward per completion:

* GRPO: TRL's GRPOTrainer, one generation call per step, trains on whatever it drew.
* VCRL bank on: VCRLTrainer with its defaults except kappa = 0.8 from step 0 (the paper's value after warm-up).
* VCRL bank off: the same with replay=False (refills come from the dataset only: DAPO-style dynamic sampling).

Each (variant, seed) runs in a fresh process (engine start, imports and memory not shared), `--steps` optimizer
steps; the first step (compilation warm-up) is left out of the times. Writes docs/benchmarks/vllm_rollout_cost.json
(everything, per step) and .md (the table, the command and the machine). The model is random: the numbers measure
rollout cost, not learning.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT = REPO_ROOT / "docs" / "benchmarks" / "vllm_rollout_cost"
VARIANTS = ("GRPO", "VCRL bank on", "VCRL bank off")
ENV = {
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",  # with 2 threads tiny-model step times swing 50x on 2-core machines
    "TOKENIZERS_PARALLELISM": "false",
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    # own compile cache: graphs compiled with vLLM-CPU's default oneDNN kernels do not fit the plain ones used here
    "VLLM_CACHE_ROOT": os.path.join(os.path.expanduser("~"), ".cache", "trl-vcrl-tests", "vllm"),
}


def train(variant: str, seed: int, steps: int, model_dir: str, output_dir: str) -> dict:
    """One training run in this process; returns per-step generation calls, rows, and times."""
    # vLLM-CPU repacks linear weights for oneDNN, after which TRL's colocate weight sync cannot load into them; the
    # plain-linear path keeps them loadable (see tests/vllm_stage/vllm_support.py). CPU only.
    import vllm._custom_ops as ops

    ops._supports_onednn = False

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from trl_vcrl import VCRLConfig, VCRLTrainer
    from trl_vcrl.testing import CPU_RUN_SETTINGS

    torch.set_num_threads(1)
    rows = [
        {"prompt": [{"role": "user", "content": f"What is {i} + {i % 7}?"}], "kind": "const" if i % 2 else "coin"}
        for i in range(2000)
    ]

    def reward(completions, completion_ids, kind, **kwargs):
        return [1.0 if k == "const" else float(sum(ids) % 2) for ids, k in zip(completion_ids, kind)]

    common = dict(
        **CPU_RUN_SETTINGS, output_dir=output_dir, seed=seed, max_steps=steps,
        per_device_train_batch_size=16, num_generations=8, max_completion_length=16, learning_rate=1e-3,
        disable_tqdm=True, use_vllm=True, vllm_mode="colocate", vllm_enable_sleep_mode=False, vllm_max_model_length=128,
    )  # fmt: skip
    if variant == "GRPO":
        trainer_cls, args = GRPOTrainer, GRPOConfig(**common)
    else:
        trainer_cls, args = VCRLTrainer, VCRLConfig(**common, kappa_warmup_steps=0, replay=variant == "VCRL bank on")

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            record["step_seconds"].append(time.perf_counter() - self.started)

    record = {"generation_calls": [0] * steps, "rows_generated": [0] * steps, "generation_seconds": [0.0] * steps,
              "weight_syncs": [0] * steps, "step_seconds": []}  # fmt: skip
    trainer = trainer_cls(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        reward_funcs=reward,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=[StepTimer()],
    )
    real_generate = trainer.vllm_generation.generate

    def generate(prompts, *args, **kwargs):  # counts every generation call (refill rounds included)
        started = time.perf_counter()
        out = real_generate(prompts, *args, **kwargs)
        step = trainer.state.global_step
        record["generation_calls"][step] += 1
        record["rows_generated"][step] += len(prompts)
        record["generation_seconds"][step] += time.perf_counter() - started
        return out

    real_sync = trainer.vllm_generation.sync_weights

    def sync_weights():
        record["weight_syncs"][trainer.state.global_step] += 1
        return real_sync()

    trainer.vllm_generation.generate, trainer.vllm_generation.sync_weights = generate, sync_weights
    trainer.train()
    logs = [row for row in trainer.state.log_history if "reward" in row]
    record["fallback_groups"] = int(sum(row.get("vcrl/groups_from_fallback", 0) for row in logs))
    # Share of trained groups without reward variance (no gradient): GRPO trains every generated group.
    record["zero_variance_trained"] = [
        1 - row["vcrl/nonzero_advantage_fraction"] if "vcrl/nonzero_advantage_fraction" in row
        else row["frac_reward_zero_std"] for row in logs
    ]  # fmt: skip
    return record


def summarize(runs: list[dict]) -> dict:
    """Means over seeds and steps; times without each run's first step."""

    def mean(key, skip_first=False):
        return statistics.mean(x for run in runs for x in run[key][1 if skip_first else 0 :])

    return {
        "generation_calls_per_step": mean("generation_calls"),
        "weight_syncs_per_step": mean("weight_syncs"),
        "rows_generated_per_step": mean("rows_generated"),
        "seconds_per_step": mean("step_seconds", skip_first=True),
        "median_seconds_per_step": statistics.median(x for run in runs for x in run["step_seconds"][1:]),
        "generation_seconds_per_step": mean("generation_seconds", skip_first=True),
        "zero_variance_trained_fraction": mean("zero_variance_trained"),
        "fallback_groups": sum(run["fallback_groups"] for run in runs),
    }


def machine() -> dict:
    import torch
    import trl
    import vllm

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "vllm": vllm.__version__, "trl": trl.__version__, "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]}  # fmt: skip


def write_markdown(result: dict) -> str:
    lines = [
        "# Rollout cost with vLLM colocate on CPU: GRPO vs VCRL",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, OMP_NUM_THREADS=1; "
        f"torch {result['machine']['torch']}, vLLM {result['machine']['vllm']}, TRL {result['machine']['trl']}.  ",
        f"Setup: tiny random Qwen2 (trl_vcrl.testing.build_tiny_model), 2 prompts x G=8 per step, 16 new tokens, "
        f"half the prompts zero-variance, kappa = 0.8, VCRL defaults otherwise (max_refill_rounds=3); {result['steps']} steps x "
        f"seeds {result['seeds']}; times without each run's first step.",
        "",
        "| variant | generation calls / step | weight syncs / step | rows generated / step | s / step (mean) "
        "| s / step (median) | of which generation | trained groups without variance | groups kept below kappa |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in result["summary"].items():
        lines.append(
            f"| {name} | {s['generation_calls_per_step']:.2f} | {s['weight_syncs_per_step']:.2f} "
            f"| {s['rows_generated_per_step']:.1f} "
            f"| {s['seconds_per_step']:.3f} | {s['median_seconds_per_step']:.3f} "
            f"| {s['generation_seconds_per_step']:.3f} | {s['zero_variance_trained_fraction']:.0%} | {s['fallback_groups']} |"
        )
    lines += [
        "",
        "GRPO trains on every group it drew, zero-variance ones included (they give no gradient); VCRL replaces "
        "groups below kappa, which costs extra generation calls (refill rounds) within the same step. The bank "
        "refills from prompts that recently passed kappa, so it needs fewer rounds than refilling from the dataset. "
        "'Groups kept below kappa' are slots still empty after max_refill_rounds, filled with the best dropped "
        "groups (all runs together).",
    ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--worker", nargs=4, metavar=("VARIANT", "SEED", "MODEL_DIR", "OUTPUT_DIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    for key, value in ENV.items():
        os.environ.setdefault(key, value)

    if args.worker:
        variant, seed, model_dir, output_dir = args.worker
        print("RESULT " + json.dumps(train(variant, int(seed), args.steps, model_dir, output_dir)))
        return

    from trl_vcrl.testing import build_tiny_model_and_tokenizer

    command = " ".join([".venv-vllm/bin/python benchmarks/vllm_rollout_cost.py", *sys.argv[1:]])
    runs = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer = build_tiny_model_and_tokenizer(seed=0)
        model.save_pretrained(tmp + "/model")
        tokenizer.save_pretrained(tmp + "/model")
        for seed in args.seeds:
            for variant in VARIANTS:
                worker = [sys.executable, __file__, "--steps", str(args.steps), "--worker", variant, str(seed),
                          tmp + "/model", f"{tmp}/out-{seed}"]  # fmt: skip
                proc = subprocess.run(worker, capture_output=True, text=True, cwd=REPO_ROOT)
                if proc.returncode:
                    sys.exit(f"{variant} seed {seed} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
                runs[variant].append(json.loads(proc.stdout.split("RESULT ", 1)[1]))
                print(f"{variant:14s} seed {seed}: {summarize(runs[variant][-1:])}", flush=True)

    result = {"command": command, "machine": machine(), "steps": args.steps, "seeds": args.seeds,
              "summary": {variant: summarize(r) for variant, r in runs.items()}, "runs": runs}  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    OUT.with_suffix(".md").write_text(write_markdown(result))
    print(write_markdown(result))


if __name__ == "__main__":
    main()
