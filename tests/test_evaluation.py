"""Tests of trl_vcrl.evaluation: the pass@k estimator, summaries, and `evaluate` with a `generate` of known correctness
on the benchmark fixtures (tests/fixtures/data/)."""

import itertools
import math
from pathlib import Path

import pytest

from trl_vcrl.data import load_benchmark
from trl_vcrl.evaluation import (
    SamplingSettings,
    evaluate,
    format_table,
    pass_at_k,
    render_prompts,
    resolve_backend,
    summarize,
    transformers_generate_fn,
)
from trl_vcrl.testing import build_tiny_model_and_tokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "data"


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


def test_summarize_gives_sample_mean_and_mean_unbiased_pass_at_k():
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
def test_evaluate_recovers_known_avg_and_pass_at_k(tokenizer, wrong_after, expected_avg, expected_pass):
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


def test_evaluate_refuses_unknown_benchmarks_and_bad_k(tokenizer):
    with pytest.raises(ValueError, match=r"Unknown or unselected benchmark\(s\) \['gsm8k'\]"):
        evaluate(lambda prompts, n: [], tokenizer, ["gsm8k"], k=1)
    with pytest.raises(ValueError, match="k <= num_samples"):
        evaluate(lambda prompts, n: [], tokenizer, ["aime24"], k=4, num_samples=2)


def test_resolve_backend_on_a_machine_without_vllm_or_gpu():
    assert resolve_backend("auto") == "transformers"
    assert resolve_backend("vllm") == "vllm"
    with pytest.raises(ValueError, match=r"backend='tgi' is not one of \['auto', 'vllm', 'transformers'\]"):
        resolve_backend("tgi")


def test_evaluate_limit_keeps_the_first_problems(tokenizer):
    files = {"amc23": str(FIXTURES / "amc23.jsonl")}  # two 2023 problems
    generate = oracle_generate(tokenizer, files, wrong_after=1)
    first_problem = render_prompts(load_benchmark("amc23", files["amc23"]), tokenizer)[0]
    asked = []

    def recording_generate(prompts, n):
        asked.extend(prompts)
        return generate(prompts, n)

    results = evaluate(recording_generate, tokenizer, ["amc23"], k=1, data_files=files, limit=1)
    assert asked == [first_problem]
    assert results["benchmarks"]["amc23"]["num_problems"] == 1


def test_sampling_settings_refuse_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature must be > 0 to draw several samples per problem, got 0.0"):
        SamplingSettings(max_new_tokens=4, temperature=0.0, top_p=1.0, seed=0)


def test_transformers_generate_fn_samples_n_completions_per_prompt_reproducibly():
    model, tokenizer = build_tiny_model_and_tokenizer(seed=0)
    prompts = render_prompts(load_benchmark("aime24", FIXTURES / "aime24.jsonl"), tokenizer)
    sampling = SamplingSettings(max_new_tokens=4, temperature=1.0, top_p=1.0, seed=3)
    first = transformers_generate_fn(model, tokenizer, sampling)(prompts, 3)
    again = transformers_generate_fn(model, tokenizer, sampling)(prompts, 3)
    other = transformers_generate_fn(model, tokenizer, SamplingSettings(4, 1.0, 1.0, seed=4))(prompts, 3)
    assert [len(group) for group in first] == [3, 3]
    assert first == again  # the seed is set once per generate function
    assert first != other


@pytest.mark.parametrize("conversational", [True, False])
def test_evaluate_prompts_match_the_training_format(tokenizer, conversational):
    """Recipes train base models on plain-text prompts (`conversational: false`); eval must ask the same way."""
    files = {"amc23": str(FIXTURES / "amc23.jsonl")}
    asked = []

    def recording_generate(prompts, n):
        asked.extend(prompts)
        return [["\\boxed{0}"] * n for _ in prompts]

    evaluate(recording_generate, tokenizer, ["amc23"], k=1, data_files=files, conversational=conversational)
    plain = load_benchmark("amc23", files["amc23"], conversational=False)["prompt"]
    assert len(asked) == len(plain) == 2
    if conversational:
        assert all("<|im_start|>user" in prompt for prompt in asked)
    else:
        assert asked == plain
