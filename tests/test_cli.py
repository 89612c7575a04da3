"""`trl-vcrl train` (TrlParser, YAML + flags, real runs on the tiny model) and `trl-vcrl eval` (avg@k, pass@k)."""

import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from trl_vcrl.cli import (
    RECIPES_DIR,
    bundled_recipes,
    load_train_dataset,
    main,
    make_train_parser,
    resolve_config_args,
    train,
)
from trl_vcrl.data import prompt_token_lengths
from trl_vcrl.testing import CPU_RUN_SETTINGS

FIXTURES = Path(__file__).parent / "fixtures" / "data"
# A random model solves nothing: VCRL warns that it kept groups below kappa to fill the batch.
FALLBACK_WARNING = "ignore:.* kept to fill the batch:UserWarning"


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


# ---------------------------------------------------------------------------------------------------------- train


def test_flags_override_yaml_and_yaml_overrides_defaults(tmp_path):
    config = write_yaml(
        tmp_path / "recipe.yaml",
        {
            **CPU_RUN_SETTINGS,
            "model_name_or_path": "some/model",
            "dataset_name": "arithmetic",
            "max_train_samples": 16,
            "reward_funcs": ["accuracy", "format"],
            "kappa": 0.5,
            "learning_rate": 1.0e-4,
            "lora_r": 8,
            "output_dir": str(tmp_path / "out"),
        },
    )
    script_args, training_args, model_args = make_train_parser().parse_args_and_config(
        args=["--config", str(config), "--kappa", "0.6", "--reward_funcs", "format", "--lora_r", "4"]
    )
    # flags win over the YAML
    assert training_args.kappa == 0.6 and script_args.reward_funcs == ["format"] and model_args.lora_r == 4
    # the YAML wins over the defaults
    assert training_args.learning_rate == 1e-4 and script_args.max_train_samples == 16
    assert script_args.dataset_name == "arithmetic" and model_args.model_name_or_path == "some/model"
    # untouched fields keep VCRL's defaults
    assert (training_args.kappa_warmup, training_args.kappa_warmup_steps, training_args.replay_limit) == (0.3, 20, 2)


def test_unknown_yaml_key_is_refused(tmp_path):
    config = write_yaml(tmp_path / "recipe.yaml", {**CPU_RUN_SETTINGS, "kapa": 0.5})
    with pytest.raises(ValueError, match=r"Unknown arguments from config file: \['--kapa', '0.5'\]"):
        make_train_parser().parse_args_and_config(args=["--config", str(config)])


@pytest.mark.parametrize("where", ["yaml", "flag"])
def test_unknown_reward_name_names_field_value_and_choices(tmp_path, where):
    values = {**CPU_RUN_SETTINGS, "reward_funcs": ["accuracy", "accurracy"]}
    flags = []
    if where == "flag":
        values.pop("reward_funcs")
        flags = ["--reward_funcs", "accuracy", "accurracy"]
    config = write_yaml(tmp_path / "recipe.yaml", values)
    message = (
        r"reward_funcs=\['accuracy', 'accurracy'\]: unknown reward function\(s\) \['accurracy'\]; allowed values "
    )
    with pytest.raises(ValueError, match=message + r"are \['accuracy', 'format'\]"):
        make_train_parser().parse_args_and_config(args=["--config", str(config), *flags])


def test_unknown_dataset_name_lists_what_is_accepted(tmp_path):
    config = write_yaml(tmp_path / "recipe.yaml", {**CPU_RUN_SETTINGS, "dataset_name": "gsm8k"})
    with pytest.raises(ValueError, match=r"dataset_name='gsm8k' is neither one of \['dapo-math-17k', "):
        make_train_parser().parse_args_and_config(args=["--config", str(config)])


@pytest.mark.parametrize("conversational", [True, False])
def test_local_dapo_file_with_sample_limit(tmp_path, conversational):
    flags = [] if conversational else ["--no_conversational"]
    config = write_yaml(
        tmp_path / "recipe.yaml",
        {**CPU_RUN_SETTINGS, "dataset_name": str(FIXTURES / "dapo_math.jsonl"), "max_train_samples": 2},
    )
    script_args, training_args, _ = make_train_parser().parse_args_and_config(args=["--config", str(config), *flags])
    dataset = load_train_dataset(script_args, training_args.seed)
    # the fixture holds 3 distinct problems (answers 27, 7, 4), each repeated
    assert len(dataset) == 2 and set(dataset["answer"]) < {"27", "7", "4"}
    assert isinstance(dataset[0]["prompt"], list if conversational else str)


def test_config_takes_a_bundled_recipe_name(tmp_path):
    for config in (["--config", "qwen3_4b_base_vcrl"], ["--config", "qwen3_4b_base_vcrl.yaml"]):
        script_args, training_args, model_args = make_train_parser().parse_args_and_config(
            args=[*resolve_config_args(config), "--use_cpu", "true"]
        )
        assert model_args.model_name_or_path == "Qwen/Qwen3-4B-Base" and training_args.max_steps == 500
        assert script_args.max_prompt_length == 1024
    with pytest.raises(
        ValueError, match=r"--config 'qwen3_4b_vcrl' is neither an existing file nor a bundled recipe; "
    ):
        main(["train", "--config", "qwen3_4b_vcrl"])


def test_recipes_command_lists_and_locates(capsys):
    main(["recipes"])
    listing = capsys.readouterr().out
    for name in bundled_recipes():
        assert f"  {name} " in listing
    assert "VCRL on Qwen3-4B-Base, the paper's setting (arXiv 2509.19803, §4)." in listing
    main(["recipes", "accelerate/zero3"])
    assert capsys.readouterr().out.strip() == str(RECIPES_DIR / "accelerate" / "zero3.yaml")
    with pytest.raises(ValueError, match=r"No bundled recipe 'zero4'; bundled recipes are \['accelerate/fsdp2'"):
        main(["recipes", "zero4"])


def test_colocate_engine_length_must_hold_prompt_and_completion(tmp_path):
    values = {**CPU_RUN_SETTINGS, "use_vllm": True, "vllm_mode": "colocate", "vllm_max_model_length": 100}
    values |= {"model_name_or_path": "unused", "max_completion_length": 64, "output_dir": str(tmp_path)}
    config = write_yaml(tmp_path / "recipe.yaml", values)
    parser = make_train_parser()
    with pytest.raises(ValueError, match=r"vllm_max_model_length=100 needs max_prompt_length"):
        train(*parser.parse_args_and_config(args=["--config", str(config)]))
    message = r"max_prompt_length=40 \+ max_completion_length=64 exceeds vllm_max_model_length=100"
    with pytest.raises(ValueError, match=message):
        train(*parser.parse_args_and_config(args=["--config", str(config), "--max_prompt_length", "40"]))
    with pytest.raises(ValueError, match="max_prompt_length must be >= 1, got 0"):
        parser.parse_args_and_config(args=["--config", str(config), "--max_prompt_length", "0"])


def tiny_run_settings(tmp_path: Path, model_dir: Path) -> dict:
    return {
        **CPU_RUN_SETTINGS,
        "model_name_or_path": str(model_dir),
        "dtype": "float32",
        "dataset_name": "arithmetic",
        "max_train_samples": 32,
        "reward_funcs": ["accuracy"],
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 8,
        "max_steps": 5,
        "kappa_warmup_steps": 1,
        "learning_rate": 1.0e-3,
        "disable_tqdm": True,
        "seed": 0,
        "output_dir": str(tmp_path / "out"),
    }


@pytest.mark.filterwarnings(FALLBACK_WARNING)
def test_train_runs_from_yaml_and_saves(tmp_path, tiny_model_dir, caplog):
    config = write_yaml(tmp_path / "recipe.yaml", tiny_run_settings(tmp_path, tiny_model_dir))
    script_args, training_args, _ = make_train_parser().parse_args_and_config(args=["--config", str(config)])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    lengths = prompt_token_lengths(load_train_dataset(script_args, training_args.seed), tokenizer)
    limit = sorted(lengths)[len(lengths) // 2]
    dropped = sum(length > limit for length in lengths)
    assert 0 < dropped < len(lengths)
    # the flag overrides max_steps: 5; prompts longer than the limit are dropped when loading, and counted in the log
    main(["train", "--config", str(config), "--max_steps", "2", "--max_prompt_length", str(limit)])
    assert f"Dropped {dropped} of {len(lengths)} training prompts longer than max_prompt_length={limit}" in caplog.text

    output_dir = tmp_path / "out"
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    kappas = [entry["vcrl/kappa"] for entry in state["log_history"] if "vcrl/kappa" in entry]
    assert kappas == [0.3, 0.8]  # kappa_warmup for kappa_warmup_steps=1 step, then kappa
    assert all("vcrl/kept_fraction" in entry for entry in state["log_history"] if "vcrl/kappa" in entry)
    assert (output_dir / "model.safetensors").is_file() and (output_dir / "tokenizer.json").is_file()
    assert "VCRL" in (output_dir / "README.md").read_text()  # the model card


@pytest.mark.filterwarnings(FALLBACK_WARNING)
def test_train_with_lora_flags_saves_an_adapter(tmp_path, tiny_model_dir):
    config = write_yaml(tmp_path / "recipe.yaml", tiny_run_settings(tmp_path, tiny_model_dir))
    flags = ["--max_steps", "1", "--use_peft", "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj"]
    main(["train", "--config", str(config), *flags])

    adapter_config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4 and sorted(adapter_config["target_modules"]) == ["q_proj", "v_proj"]
    assert not (tmp_path / "out" / "model.safetensors").exists()


# ----------------------------------------------------------------------------------------------------------- eval


def test_eval_command_checks_benchmarks_before_loading_the_model(tmp_path):
    # The model path does not exist: the benchmark check has to fail first.
    args = ["eval", "--model", str(tmp_path / "missing"), "--benchmarks", "aime24,gsm8k", "--backend", "transformers"]
    with pytest.raises(ValueError, match=r"Unknown or unselected benchmark\(s\) \['gsm8k'\]"):
        main(args)
    with pytest.raises(ValueError, match=r"--data_files expects NAME=PATH items, got 'aime24.jsonl'"):
        main([*args[:4], "aime24", "--data_files", "aime24.jsonl"])


def test_eval_command_on_tiny_model(tmp_path, tiny_model_dir, capsys):
    problems = [("What is $2+3$?", 5), ("What is $7 \\times 6$?", 42), ("What is $10-4$?", 6)]
    benchmark = tmp_path / "aime24.jsonl"  # AIME-2024's Hub schema: integer answers
    benchmark.write_text(
        "".join(json.dumps({"ID": str(i), "Problem": p, "Answer": a}) + "\n" for i, (p, a) in enumerate(problems))
    )
    output = tmp_path / "results" / "eval.json"
    main(
        [
            "eval",
            "--model",
            str(tiny_model_dir),
            "--benchmarks",
            "aime24",
            "--k",
            "2",
            "--num_samples",
            "3",
            "--backend",
            "transformers",
            "--max_new_tokens",
            "4",
            "--limit",
            "2",
            "--data_files",
            f"aime24={benchmark}",
            "--output",
            str(output),
        ]
    )

    results = json.loads(output.read_text())
    aime = results["benchmarks"]["aime24"]
    assert (aime["num_problems"], aime["num_samples"]) == (2, 3)  # --limit 2 of 3 problems
    assert 0.0 <= aime["avg@2"] <= aime["pass@2"] <= 1.0
    assert len(aime["correct_per_problem"]) == 2
    assert results["average"] == {"avg@2": aime["avg@2"], "pass@2": aime["pass@2"]}
    assert (results["backend"], results["k"], results["max_new_tokens"]) == ("transformers", 2, 4)
    printed = capsys.readouterr().out
    assert "avg@2 (%)" in printed and "pass@2 (%)" in printed
    assert f"{'aime24':<16}{2:>10}{100 * aime['avg@2']:>14.2f}{100 * aime['pass@2']:>14.2f}" in printed
    assert f"results written to {output}" in printed
