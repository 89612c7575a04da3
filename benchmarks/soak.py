"""Soak test: step time and memory over a long run, VCRL and GRPO, on the tiny model with transformers generation.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/soak.py [--steps 2000] [--window 200]

Both arms train the tiny random Qwen2 (trl_vcrl.testing.build_tiny_model) on 2000 prompts, 4 groups of G=4 per step, with
gradient checkpointing at GRPOConfig's default (on), so every generation call toggles it: the setting in which
transformers leaked one input-embedding hook per call. A flat step time per window is the pass criterion; the
hook count on the input embeddings at the end is reported too. Writes docs/benchmarks/soak.{json,md}.
"""

import argparse
import json
import os
import platform
import statistics
import time
import zlib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import PrinterCallback, TrainerCallback  # noqa: E402

from trl_vcrl import VCRLConfig, VCRLTrainer  # noqa: E402
from trl_vcrl.testing import CPU_RUN_SETTINGS, build_tiny_model, build_tiny_tokenizer  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "soak"
ARMS = {"VCRL": True, "GRPO (both switches off)": False}


def hash_reward(completions, **kwargs):
    """Binary reward from a hash of the completion: a spread of p, so VCRL drops groups and refills."""
    return [float(zlib.crc32(str(c).encode()) % 2) for c in completions]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


class WindowRecorder(TrainerCallback):
    """Process CPU time of every optimizer step (single-threaded, so other load on the machine counts less than in
    wall time) and the resident memory at the end of each window."""

    def __init__(self, window: int):
        self.window, self.step_times, self.rss = window, [], []

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_times.append(time.process_time() - self._start)
        if len(self.step_times) % self.window == 0:
            self.rss.append(rss_mib())


def run_arm(curriculum: bool, steps: int, window: int, output_dir: str) -> dict:
    tokenizer = build_tiny_tokenizer()
    dataset = Dataset.from_list([{"prompt": f"Question {i}: what is {i} + {i % 7}?"} for i in range(2000)])
    args = VCRLConfig(**(CPU_RUN_SETTINGS | dict(
        output_dir=output_dir, per_device_train_batch_size=16, num_generations=4, max_completion_length=8,
        max_steps=steps, learning_rate=1e-4, logging_steps=50, disable_tqdm=True, seed=0, dynamic_sampling=curriculum,
        replay=curriculum,
    )))  # fmt: skip
    trainer = VCRLTrainer(
        build_tiny_model(tokenizer, seed=0), hash_reward, args=args, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.remove_callback(PrinterCallback)
    recorder = WindowRecorder(window)
    trainer.add_callback(recorder)
    trainer.train()
    windows = []
    for i, rss in enumerate(recorder.rss):
        times = recorder.step_times[i * window : (i + 1) * window]
        windows.append({"steps": f"{i * window}-{(i + 1) * window}", "median_ms": 1e3 * statistics.median(times),
                        "rss_mib": rss})  # fmt: skip
    generation_calls = [e["vcrl/refill_rounds"] + 1 for e in trainer.state.log_history if "vcrl/refill_rounds" in e]
    return {
        "windows": windows,
        "input_embedding_hooks_at_end": len(trainer.model.get_input_embeddings()._forward_hooks),
        "generation_calls_per_step": statistics.mean(generation_calls) if generation_calls else 1.0,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--output_dir", default="runs/soak")
    cli = parser.parse_args()
    torch.set_num_threads(1)
    results = {name: run_arm(curriculum, cli.steps, cli.window, cli.output_dir) for name, curriculum in ARMS.items()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(results, indent=1))
    lines = [
        "# Soak: step time and memory over a long run",
        "",
        f"Command: `HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/soak.py --steps {cli.steps} "
        f"--window {cli.window}`",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, one thread. Tiny Qwen2, 4 groups of G=4 per step, 8 new tokens, transformers "
        "generation, gradient checkpointing on. Median process CPU time per optimizer step in each window of steps.",
        "",
        "| steps | " + " | ".join(f"{name} ms/step | {name} RSS MiB" for name in results) + " |",
        "|---|" + "---|---|" * len(results),
    ]
    for i in range(len(next(iter(results.values()))["windows"])):
        cells = [f"{r['windows'][i]['median_ms']:.1f} | {r['windows'][i]['rss_mib']:.0f}" for r in results.values()]
        lines.append(f"| {next(iter(results.values()))['windows'][i]['steps']} | " + " | ".join(cells) + " |")
    lines += ["", "| arm | generation calls per step | hooks on the input embeddings at the end |", "|---|---|---|"]
    lines += [
        f"| {name} | {r['generation_calls_per_step']:.2f} | {r['input_embedding_hooks_at_end']} |"
        for name, r in results.items()
    ]
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
