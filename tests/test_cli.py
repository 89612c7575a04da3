"""`trl-vcrl train` (TrlParser, YAML + flags, real runs on the tiny model) and `trl-vcrl eval` (avg@k, pass@k)."""

import itertools
import json
import math
from pathlib import Path

import pytest
import yaml

from trl_vcrl.cli import load_train_dataset, main, make_train_parser
from trl_vcrl.evaluation import (
    evaluate,
    format_table,
    load_benchmark,
    pass_at_k,
    render_prompts,
    resolve_backend,
    summarize,
)
from trl_vcrl.tiny_model import build_tiny_tokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "data"
# A random model solves nothing: VCRL warns that it kept groups below kappa to fill the batch.
FALLBACK_WARNING = "ignore:.* kept to fill the batch:UserWarning"
# Settings every CPU run needs; a test's own YAML adds what it exercises.
CPU_SETTINGS = {"use_cpu": True, "bf16": False, "report_to": "none"}


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


# ---------------------------------------------------------------------------------------------------------- train


def test_flags_override_yaml_and_yaml_overrides_defaults(tmp_path):
    config = write_yaml(
        tmp_path / "recipe.yaml",
        {
            **CPU_SETTINGS,
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
    config = write_yaml(tmp_path / "recipe.yaml", {**CPU_SETTINGS, "kapa": 0.5})
    with pytest.raises(ValueError, match=r"Unknown arguments from config file: \['--kapa', '0.5'\]"):
        make_train_parser().parse_args_and_config(args=["--config", str(config)])


@pytest.mark.parametrize("where", ["yaml", "flag"])
def test_unknown_reward_name_names_field_value_and_choices(tmp_path, where):
    values = {**CPU_SETTINGS, "reward_funcs": ["accuracy", "accurracy"]}
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
    config = write_yaml(tmp_path / "recipe.yaml", {**CPU_SETTINGS, "dataset_name": "gsm8k"})
    with pytest.raises(ValueError, match=r"dataset_name='gsm8k' is neither one of \['dapo-math-17k', "):
        make_train_parser().parse_args_and_config(args=["--config", str(config)])


@pytest.mark.parametrize("conversational", [True, False])
def test_local_dapo_file_with_sample_limit(tmp_path, conversational):
    flags = [] if conversational else ["--no_conversational"]
    config = write_yaml(
        tmp_path / "recipe.yaml",
        {**CPU_SETTINGS, "dataset_name": str(FIXTURES / "dapo_math.jsonl"), "max_train_samples": 2},
    )
    script_args, training_args, _ = make_train_parser().parse_args_and_config(args=["--config", str(config), *flags])
    dataset = load_train_dataset(script_args, training_args.seed)
    # the fixture holds 3 distinct problems (answers 27, 7, 4), each repeated
    assert len(dataset) == 2 and set(dataset["answer"]) < {"27", "7", "4"}
    assert isinstance(dataset[0]["prompt"], list if conversational else str)


def tiny_run_settings(tmp_path: Path, model_dir: Path) -> dict:
    return {
        **CPU_SETTINGS,
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
        "beta": 0.0,
        "logging_steps": 1,
        "save_strategy": "no",
        "disable_tqdm": True,
        "seed": 0,
        "output_dir": str(tmp_path / "out"),
    }


@pytest.mark.filterwarnings(FALLBACK_WARNING)
def test_train_runs_from_yaml_and_saves(tmp_path, tiny_model_dir):
    config = write_yaml(tmp_path / "recipe.yaml", tiny_run_settings(tmp_path, tiny_model_dir))
    main(["train", "--config", str(config), "--max_steps", "2"])  # the flag overrides max_steps: 5

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


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    return sum(any(subset) for subset in subsets) / len(subsets)


def test_pass_at_k_equals_enumeration_over_all_k_subsets():
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert math.isclose(pass_at_k(n, c, k), brute_force_pass_at_k(n, c, k), abs_tol=1e-12), (n, c, k)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match=r"\[0, n=4\]"):
        pass_at_k(4, 5, 2)


def test_summarize_and_average():
    scores = [[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]
    summary = summarize(scores, k=2)
    # pass@2 of the third problem: 1 - C(3,2)/C(4,2) = 0.5
    assert summary == {"avg@2": 5 / 12, "pass@2": (1 + 0 + 0.5) / 3, "num_problems": 3, "num_samples": 4}
    with pytest.raises(ValueError, match="same number of samples"):
        summarize([[1.0, 0.0], [1.0]], k=1)


def oracle_generate(tokenizer, benchmarks, wrong_after: int):
    """A fake `generate`: the first `wrong_after` samples box the gold answer, the rest box a wrong number."""
    gold = {}
    for name, path in benchmarks.items():
        dataset = load_benchmark(name, path)
        gold.update(zip(render_prompts(dataset, tokenizer), dataset["answer"], strict=True))

    def generate(prompts, n):
        return [
            [f"The answer is \\boxed{{{gold[p]}}}." if i < wrong_after else "So \\boxed{-12345}." for i in range(n)]
            for p in prompts
        ]

    return generate


@pytest.mark.parametrize(
    "wrong_after, expected_avg, expected_pass",
    [(4, 1.0, 1.0), (1, 0.25, 0.5), (0, 0.0, 0.0)],  # one of 4 right: pass@2 = 1 - C(3,2)/C(4,2)
)
def test_evaluate_with_known_correctness(wrong_after, expected_avg, expected_pass):
    tokenizer = build_tiny_tokenizer()
    files = {name: str(FIXTURES / f"{name}.jsonl") for name in ("aime24", "math500", "olympiadbench")}
    generate = oracle_generate(tokenizer, files, wrong_after)
    results = evaluate(generate, tokenizer, list(files), k=2, num_samples=4, data_files=files, batch_size=1)

    assert list(results["benchmarks"]) == list(files)
    for name, result in results["benchmarks"].items():
        assert (result["avg@2"], result["pass@2"], result["num_samples"]) == (expected_avg, expected_pass, 4), name
        assert result["correct_per_problem"] == [wrong_after] * result["num_problems"]
    assert results["average"] == {"avg@2": expected_avg, "pass@2": expected_pass}
    table = format_table(results, k=2)
    assert f"{'math500':<16}{2:>10}{100 * expected_avg:>14.2f}{100 * expected_pass:>14.2f}" in table.splitlines()


def test_evaluate_refuses_unknown_benchmarks_and_bad_k():
    tokenizer = build_tiny_tokenizer()
    with pytest.raises(ValueError, match=r"Unknown or unselected benchmark\(s\) \['gsm8k'\]"):
        evaluate(lambda prompts, n: [], tokenizer, ["gsm8k"], k=1)
    with pytest.raises(ValueError, match="k <= num_samples"):
        evaluate(lambda prompts, n: [], tokenizer, ["aime24"], k=4, num_samples=2)


def test_eval_command_checks_benchmarks_before_loading_the_model(tmp_path):
    # The model path does not exist: the benchmark check has to fail first.
    args = ["eval", "--model", str(tmp_path / "missing"), "--benchmarks", "aime24,gsm8k", "--backend", "transformers"]
    with pytest.raises(ValueError, match=r"Unknown or unselected benchmark\(s\) \['gsm8k'\]"):
        main(args)
    with pytest.raises(ValueError, match=r"--data_files expects NAME=PATH items, got 'aime24.jsonl'"):
        main([*args[:4], "aime24", "--data_files", "aime24.jsonl"])


def test_resolve_backend_on_a_machine_without_vllm_or_gpu():
    assert resolve_backend("auto") == "transformers"
    assert resolve_backend("vllm") == "vllm"
    with pytest.raises(ValueError, match=r"backend='tgi' is not one of \['auto', 'vllm', 'transformers'\]"):
        resolve_backend("tgi")


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
