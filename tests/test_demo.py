"""`trl-vcrl demo`: the entry point run for real for 2 steps on the tiny local model (the demo's model is a parameter),
its summary, plots and progress output, and the summary arithmetic on known log histories."""

import json
from pathlib import Path

import matplotlib.image
import pytest

from trl_vcrl import demo
from trl_vcrl.cli import make_parser

REPO_ROOT = Path(__file__).resolve().parents[1]


def _png_size(path) -> tuple[int, int]:
    height, width, _ = matplotlib.image.imread(path).shape
    return width, height


def test_demo_runs_and_prints_a_summary_and_the_plot_path(tiny_model_dir, tmp_path, capsys):
    output_dir = tmp_path / "demo"
    summary = demo.run_demo(str(output_dir), max_steps=2, model=str(tiny_model_dir))

    lines = summary.splitlines()
    assert f"Demo: {Path(tiny_model_dir).name} + LoRA, 2 steps x 8 prompts x 4 completions" in summary
    (reward_line,) = [line for line in lines if line.startswith("VCRL: reward ")]
    assert "in the first quarter of steps ->" in reward_line and "in the last" in reward_line
    state = json.loads((output_dir / "trainer_state.json").read_text())
    rewards = [row["reward"] for row in state["log_history"] if "reward" in row]
    assert len(rewards) == 2
    # 2 steps: a quarter is one step, so the line shows the first and the last step's reward.
    assert f"reward {rewards[0]:.2f} in the first quarter of steps -> {rewards[1]:.2f} in the last" in reward_line
    assert any(line.startswith("  rollouts: ") and "to train on 16 groups" in line for line in lines)
    assert any(line.startswith("  curriculum: kept ") for line in lines)
    assert f"Curriculum plot: {output_dir / 'curriculum.png'}" in lines
    assert f"Full metrics of every step: {output_dir / 'trainer_state.json'}" in lines
    assert lines[-1] == "Train a real model on a GPU: trl-vcrl train --config recipes/qwen3_0.6b_base_vcrl_lora.yaml"
    assert (REPO_ROOT / "recipes" / "qwen3_0.6b_base_vcrl_lora.yaml").is_file()
    assert _png_size(output_dir / "curriculum.png") == (1300, 850)
    assert not (output_dir / "compare.png").exists()

    # One progress bar with the few numbers that matter, not TRL's metric dict of every step.
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "VCRL: 100%" in output and "reward(last 2)=" in output and "gen/trained=" in output
    assert "'loss':" not in output and "'vcrl/kappa':" not in output


def test_demo_compare_trains_grpo_on_the_same_prompts_and_plots_both(tiny_model_dir, tmp_path):
    output_dir = tmp_path / "demo"
    summary = demo.run_demo(str(output_dir), max_steps=2, compare=True, model=str(tiny_model_dir))

    lines = summary.splitlines()
    grpo = next(index for index, line in enumerate(lines) if line.startswith("GRPO: reward "))
    assert "1.00 generated per trained group" in lines[grpo + 1]  # GRPO trains on exactly what it generates
    assert lines[grpo + 1].startswith("  rollouts:")  # and has no curriculum to report
    grpo_state = json.loads((output_dir / "grpo" / "trainer_state.json").read_text())
    assert not any(key.startswith("vcrl/") for row in grpo_state["log_history"] for key in row)
    assert f"VCRL vs GRPO reward by rollouts generated: {output_dir / 'compare.png'}" in summary
    states = f"{output_dir / 'trainer_state.json'}, {output_dir / 'grpo' / 'trainer_state.json'}"
    assert f"Full metrics of every step: {states}" in summary
    assert _png_size(output_dir / "compare.png") == (800, 500)


def test_grpo_config_is_vcrl_with_both_switches_off(tmp_path):
    vcrl, grpo = demo.demo_config(str(tmp_path), vcrl=True), demo.demo_config(str(tmp_path), vcrl=False)
    assert (vcrl.dynamic_sampling, vcrl.replay) == (True, True)
    assert (grpo.dynamic_sampling, grpo.replay) == (False, False)
    assert vcrl.to_dict() | {"dynamic_sampling": False, "replay": False} == grpo.to_dict()


def test_demo_prompts_are_bare_plain_text_problems():
    dataset = demo.demo_dataset(seed=0)
    assert len(dataset) == demo.DEMO_DATASET_SIZE
    assert sorted(set(dataset["level"])) == demo.DEMO_LEVELS
    assert all(isinstance(prompt, str) and prompt.rstrip().endswith("=") for prompt in dataset["prompt"])


def test_quarter_means_and_generated_groups():
    assert demo.quarter_means([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0]) == pytest.approx((0.1, 1.0))
    assert demo.quarter_means([0.3, 0.5]) == pytest.approx((0.3, 0.5))
    vcrl = [{"reward": 0.5, "vcrl/rollouts_per_trained_group": 1.5, "step": 1}, {"reward": 0.5, "step": 2}]
    vcrl[1]["vcrl/rollouts_per_trained_group"] = 2.0
    vcrl.append({"train_runtime": 3.0, "step": 2})  # the final summary row is not a step
    assert demo.generated_groups(vcrl, groups_per_step=8) == pytest.approx(28.0)
    assert demo.generated_groups([{"reward": 0.1, "step": 1}, {"reward": 0.2, "step": 2}], 8) == pytest.approx(16.0)


def test_cli_demo_flags():
    parsed = make_parser().parse_args(["demo", "--compare", "--seed", "3", "--max_steps", "5"])
    assert (parsed.compare, parsed.seed, parsed.max_steps, parsed.output_dir) == (True, 3, 5, "runs/demo")
    assert make_parser().parse_args(["demo"]).compare is False
