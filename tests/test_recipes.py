"""The training recipes in recipes/*.yaml: they parse with `trl-vcrl train`'s parser, hold the paper's settings, every
key is commented, and the commands in their headers are valid."""

import re
import shlex
from enum import Enum
from pathlib import Path

import pytest
import yaml
from trl import get_peft_config

from trl_vcrl.cli import make_train_parser
from trl_vcrl.curriculum import normalized_variance

RECIPES_DIR = Path(__file__).parent.parent / "recipes"
RECIPES = sorted(RECIPES_DIR.glob("*.yaml"))
PAPER_RECIPES = ["qwen3_4b_base_vcrl.yaml", "qwen3_8b_base_vcrl.yaml"]
SERVER_RECIPES = [*PAPER_RECIPES, "qwen3_4b_base_grpo.yaml", "qwen3_4b_base_dapo_filter.yaml"]
# Training processes of the server recipes: 8 GPUs, one serving vLLM.
TRAIN_PROCESSES = 7
CURRICULUM_KEYS = {
    "kappa",
    "kappa_warmup",
    "kappa_warmup_steps",
    "reward_range",
    "dynamic_sampling",
    "replay",
    "replay_bank_size",
    "replay_momentum",
    "replay_limit",
    "max_refill_rounds",
}


def parse(path: Path, *flags: str):
    # use_cpu: bf16 recipes are refused by TrainingArguments on a machine without a GPU otherwise.
    return make_train_parser().parse_args_and_config(args=["--config", str(path), "--use_cpu", "true", *flags])


def raw(name: str) -> dict:
    return yaml.safe_load((RECIPES_DIR / name).read_text())


def header_command(name: str, program: str) -> list[str]:
    """The arguments of the header line of recipe `name` that runs `program`."""
    for line in (RECIPES_DIR / name).read_text().splitlines():
        if line.startswith("#") and program in line:
            words = shlex.split(line.lstrip("# "))
            return words[words.index(program.split()[-1]) + 1 :]
    raise AssertionError(f"{name} has no header command running {program!r}")


def test_recipe_set():
    assert [path.name for path in RECIPES] == sorted([*SERVER_RECIPES, "qwen3_0.6b_base_vcrl_lora.yaml"])


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.name)
def test_recipe_parses_to_its_values(path):
    script_args, training_args, model_args = parse(path)
    parsed = {**vars(model_args), **vars(training_args), **vars(script_args)}
    for key, value in raw(path.name).items():
        got = parsed[key]
        if isinstance(got, Enum):
            got = got.value
        if key == "report_to":  # "none" becomes the empty list of integrations
            assert value == "none" and got == []
        elif key == "lora_target_modules" and len(value) == 1:  # ModelConfig unwraps a single module name
            assert got == value[0]
        else:
            assert got == value, key


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.name)
def test_every_key_is_commented(path):
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#"), "header comment"
    uncommented = [
        line
        for index, line in enumerate(lines)
        if line.strip()
        and not line.lstrip().startswith("#")
        and "#" not in line
        and not (index > 0 and lines[index - 1].lstrip().startswith("#"))
    ]
    assert uncommented == []
    # flat `key: value` lines only, so "the line above is a comment" is the comment of that key
    nested = [line for line in lines if line.strip() and not line.startswith("#") and not re.match(r"^\w+: ", line)]
    assert nested == []


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_paper_settings(name):
    script_args, training_args, model_args = parse(RECIPES_DIR / name)
    assert model_args.model_name_or_path == f"Qwen/Qwen3-{name.split('_')[1][0]}B-Base"
    assert script_args.dataset_name == "dapo-math-17k" and script_args.reward_funcs == ["accuracy"]
    assert training_args.max_steps == 500
    assert training_args.dynamic_sampling and training_args.replay
    schedule = training_args.get_kappa_schedule()
    assert [schedule(step) for step in (0, 19, 20, 499)] == [0.3, 0.3, 0.8, 0.8]
    assert (training_args.replay_momentum, training_args.replay_limit) == (0.9, 2)
    assert training_args.num_generations == 16 and training_args.learning_rate == 1e-6
    assert training_args.temperature == 1.0


@pytest.mark.parametrize("name", SERVER_RECIPES)
def test_batch_splits_into_groups_on_seven_gpus(name):
    _, training_args, _ = parse(RECIPES_DIR / name)
    rows_per_process = training_args.per_device_train_batch_size * training_args.steps_per_generation
    assert rows_per_process % training_args.num_generations == 0  # VCRL keeps whole groups per process
    assert rows_per_process * TRAIN_PROCESSES // training_args.num_generations == 28  # prompts per step


def test_grpo_and_dapo_baselines_differ_from_vcrl_only_in_the_curriculum():
    vcrl = raw("qwen3_4b_base_vcrl.yaml")
    for name in ("qwen3_4b_base_grpo.yaml", "qwen3_4b_base_dapo_filter.yaml"):
        baseline = raw(name)
        shared = set(vcrl) - CURRICULUM_KEYS - {"output_dir"}
        assert {key: baseline.get(key) for key in shared} == {key: vcrl[key] for key in shared}, name
        assert baseline["output_dir"] != vcrl["output_dir"]

    _, grpo, _ = parse(RECIPES_DIR / "qwen3_4b_base_grpo.yaml")
    assert not grpo.dynamic_sampling and not grpo.replay


def test_dapo_filter_keeps_exactly_groups_with_mixed_rewards():
    _, args, _ = parse(RECIPES_DIR / "qwen3_4b_base_dapo_filter.yaml")
    assert args.dynamic_sampling and not args.replay and args.max_refill_rounds > 0
    schedule, G = args.get_kappa_schedule(), args.num_generations
    for step in (0, 20, 499):
        kept = [k for k in range(G + 1) if normalized_variance([1.0] * k + [0.0] * (G - k)) >= schedule(step)]
        assert kept == list(range(1, G))


def test_lora_colocate_recipe():
    _, args, model_args = parse(RECIPES_DIR / "qwen3_0.6b_base_vcrl_lora.yaml")
    assert args.use_vllm and args.vllm_mode == "colocate"
    assert args.vllm_max_model_length >= args.max_completion_length
    peft_config = get_peft_config(model_args)
    assert (peft_config.r, peft_config.lora_alpha, peft_config.target_modules) == (32, 64, "all-linear")
    assert args.per_device_train_batch_size * args.steps_per_generation % args.num_generations == 0
    assert header_command("qwen3_0.6b_base_vcrl_lora.yaml", "trl-vcrl") == [
        "train",
        "--config",
        "recipes/qwen3_0.6b_base_vcrl_lora.yaml",
    ]


@pytest.mark.parametrize("name", SERVER_RECIPES)
def test_header_commands_are_valid(name):
    from trl.scripts.vllm_serve import make_parser as make_vllm_serve_parser

    _, training_args, model_args = parse(RECIPES_DIR / name)
    serve_args = make_vllm_serve_parser().parse_args_and_config(args=header_command(name, "trl vllm-serve"))[0]
    assert serve_args.model == model_args.model_name_or_path
    assert (serve_args.tensor_parallel_size, serve_args.data_parallel_size) == (1, 1)
    assert serve_args.port == training_args.vllm_server_port
    assert serve_args.max_model_len >= training_args.max_completion_length + 512  # room for the prompt

    launch = header_command(name, "accelerate launch")
    config_file = launch[launch.index("--config_file") + 1]
    assert (RECIPES_DIR.parent / config_file).is_file()
    assert launch[launch.index("--num_processes") + 1] == str(TRAIN_PROCESSES)
    assert launch[launch.index("-m") + 1 :] == ["trl_vcrl.cli", "train", "--config", f"recipes/{name}"]
