"""Tests of trl_vcrl.data on small local files in each source's real Hub schema (tests/fixtures/data/)."""

import json
import re
from pathlib import Path

import pytest
from datasets import load_dataset

from trl_vcrl.data import (
    ARITHMETIC_LEVELS,
    DAPO_PROMPT_PREFIX,
    EVAL_BENCHMARKS,
    MATH_PROMPT_TEMPLATE,
    arithmetic_curriculum_dataset,
    drop_long_prompts,
    load_benchmark,
    load_dapo_math,
    prompt_token_lengths,
    reasoning_gym_dataset,
)

FIXTURES = Path(__file__).parent / "fixtures" / "data"
BENCHMARK_FILES = {name: FIXTURES / f"{name}.jsonl" for name in EVAL_BENCHMARKS}


def _user_text(prompt):
    assert isinstance(prompt, list) and len(prompt) == 1 and prompt[0]["role"] == "user"
    return prompt[0]["content"]


def test_dapo_math_dedupes_retemplates_and_reads_ground_truth():
    dataset = load_dapo_math(FIXTURES / "dapo_math.jsonl")
    assert dataset.column_names == ["prompt", "answer", "source"]
    # the fixture holds 3 problems, each 3 times
    assert dataset["answer"] == ["27", "7", "4"]
    assert set(dataset["source"]) == {"dapo_math"}
    first = _user_text(dataset[0]["prompt"])
    assert first == MATH_PROMPT_TEMPLATE.format(problem="What is $3^3$?")
    assert first == "What is $3^3$?\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    assert all("Answer:" not in _user_text(prompt) for prompt in dataset["prompt"])


def test_dapo_math_reads_parquet_and_standard_prompts(tmp_path):
    parquet = tmp_path / "dapo-math-17k.parquet"
    load_dataset("json", data_files=str(FIXTURES / "dapo_math.jsonl"), split="train").to_parquet(parquet)
    dataset = load_dapo_math(parquet, conversational=False)
    assert dataset["prompt"][0] == MATH_PROMPT_TEMPLATE.format(problem="What is $3^3$?")
    assert dataset["answer"] == ["27", "7", "4"]


def test_dapo_math_refuses_prompts_without_dapo_instruction(tmp_path):
    row = json.loads((FIXTURES / "dapo_math.jsonl").read_text().splitlines()[0])
    row["prompt"][0]["content"] = "What is $3^3$?"
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"other\.jsonl row 0: prompt content does not start with DAPO_PROMPT_PREFIX"):
        load_dapo_math(path)
    assert DAPO_PROMPT_PREFIX.startswith("Solve the following math problem step by step.")


@pytest.mark.parametrize(
    "name, answers",
    [
        ("aime24", ["204", "25"]),  # ints
        ("aime25", ["70", "117"]),
        ("math500", [r"\left( 3, \frac{\pi}{2} \right)", r"\frac{14}{3}"]),
        ("olympiadbench", [r"\frac{1}{2}", "1, 2"]),  # $ stripped, several answers joined
        ("amc23", ["27", "4"]),  # floats 27.0 -> "27"; the 2022 row is dropped
    ],
)
def test_eval_benchmarks_schema_and_answers(name, answers):
    dataset = load_benchmark(name, BENCHMARK_FILES[name])
    assert dataset.column_names == ["prompt", "answer", "source"]
    assert dataset["answer"] == answers
    assert dataset["source"] == [name] * len(answers)
    for prompt in dataset["prompt"]:
        assert _user_text(prompt).endswith("put your final answer within \\boxed{}.")


def test_eval_benchmark_problem_text_and_standard_format():
    conversational = load_benchmark("amc23", BENCHMARK_FILES["amc23"])
    standard = load_benchmark("amc23", BENCHMARK_FILES["amc23"], conversational=False)
    assert [_user_text(prompt) for prompt in conversational["prompt"]] == standard["prompt"]
    assert standard["prompt"][0].startswith("Cities $A$ and $B$ are $45$ miles apart.")
    assert "2022" not in " ".join(standard["prompt"])
    olympiad = load_benchmark("olympiadbench", BENCHMARK_FILES["olympiadbench"], conversational=False)
    assert olympiad["prompt"][1].startswith("Find all real $x$ with $x^2 - 3x + 2 = 0$.\n\n")


def test_missing_column_error_names_file_column_and_expected():
    path = FIXTURES / "aime24_missing_answer.jsonl"
    with pytest.raises(ValueError) as error:
        load_benchmark("aime24", path)
    message = str(error.value)
    assert str(path) in message
    assert "['Answer']" in message  # the missing column
    assert "['Problem', 'Answer']" in message  # the expected ones


def test_unknown_benchmark_name_lists_the_known_ones():
    with pytest.raises(
        ValueError, match=r"Unknown benchmark 'gsm8k'; allowed values are \['aime24', 'aime25', 'amc23', "
    ):
        load_benchmark("gsm8k")


def test_unknown_file_suffix_is_refused(tmp_path):
    path = tmp_path / "aime24.csv"
    path.write_text("Problem,Answer\nWhat is 1+1?,2\n")
    with pytest.raises(ValueError, match=r"suffix '\.csv' is not one of \['\.json', '\.jsonl', '\.parquet'\]"):
        load_benchmark("aime24", path)


@pytest.mark.parametrize("conversational", [True, False])
def test_drop_long_prompts_by_templated_length(tokenizer, conversational, caplog):
    dataset = arithmetic_curriculum_dataset(size=32, seed=0, conversational=conversational)
    lengths = prompt_token_lengths(dataset, tokenizer, batch_size=5)  # several batches
    for row, length in zip(dataset, lengths):  # the length TRL's generation sees
        if conversational:
            ids = tokenizer.apply_chat_template(
                row["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True
            )
            assert length == len(ids["input_ids"])
        else:
            assert length == len(tokenizer(text=row["prompt"])["input_ids"])
    limit = sorted(lengths)[len(lengths) // 2]
    expected = [row for row, length in zip(dataset, lengths) if length <= limit]
    assert 0 < len(expected) < len(dataset)
    with caplog.at_level("INFO", logger="trl_vcrl.data"):
        kept = drop_long_prompts(dataset, tokenizer, limit)
    assert kept.to_list() == expected
    assert f"Dropped {len(dataset) - len(expected)} of 32 training prompts longer than max_prompt_length={limit}" in (
        caplog.text
    )
    with pytest.raises(ValueError, match=rf"max_prompt_length={min(lengths) - 1}: every one of the 32 prompts"):
        drop_long_prompts(dataset, tokenizer, min(lengths) - 1)


def test_reasoning_gym_dataset_is_seeded_and_templated():
    first = reasoning_gym_dataset("chain_sum", size=6, seed=7, min_terms=2, max_terms=2, max_digits=1)
    again = reasoning_gym_dataset("chain_sum", size=6, seed=7, min_terms=2, max_terms=2, max_digits=1)
    other = reasoning_gym_dataset("chain_sum", size=6, seed=8, min_terms=2, max_terms=2, max_digits=1)
    assert first.to_list() == again.to_list()
    assert first["prompt"] != other["prompt"]
    assert first.column_names == ["prompt", "answer", "source"]
    assert set(first["source"]) == {"chain_sum"}
    text = _user_text(first["prompt"][0])
    assert "\\boxed{" in text and "step by step" not in text
    assert all(re.fullmatch(r"-?\d+", answer) for answer in first["answer"])
    standard = reasoning_gym_dataset("chain_sum", size=6, seed=7, conversational=False, max_terms=2, max_digits=1)
    assert standard["prompt"][0] == text


def _operands(prompt):
    expression = _user_text(prompt).split("\n")[0]
    return [int(number) for number in re.findall(r"\d+", expression)]


def test_arithmetic_curriculum_mixes_levels_of_growing_difficulty():
    dataset = arithmetic_curriculum_dataset(size=40, seed=0)
    assert dataset.column_names == ["prompt", "answer", "source", "level"]
    levels = dataset["level"]
    assert {level: levels.count(level) for level in ARITHMETIC_LEVELS} == {level: 10 for level in ARITHMETIC_LEVELS}
    assert levels != sorted(levels)  # shuffled, so every batch sees a mix
    by_level = {level: [row for row in dataset if row["level"] == level] for level in ARITHMETIC_LEVELS}
    for level, (task, config) in ARITHMETIC_LEVELS.items():
        assert {row["source"] for row in by_level[level]} == {task}
        for row in by_level[level]:
            operands = _operands(row["prompt"])
            assert len(operands) == config["max_terms"]
            assert max(operands) < 10 ** config["max_digits"]
    # harder levels have bigger answers
    mean_size = {level: sum(abs(int(row["answer"])) for row in rows) / len(rows) for level, rows in by_level.items()}
    assert mean_size[1] < mean_size[3] < mean_size[4]


def test_arithmetic_curriculum_is_seeded_and_selects_levels():
    assert (
        arithmetic_curriculum_dataset(size=9, seed=1).to_list()
        == arithmetic_curriculum_dataset(size=9, seed=1).to_list()
    )
    assert (
        arithmetic_curriculum_dataset(size=9, seed=1)["prompt"]
        != arithmetic_curriculum_dataset(size=9, seed=2)["prompt"]
    )
    chosen = arithmetic_curriculum_dataset(size=5, seed=0, levels=[1, 4], conversational=False)
    assert sorted(chosen["level"]) == [1, 1, 1, 4, 4]
    assert isinstance(chosen["prompt"][0], str)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(levels=[0, 1]), r"levels=\[0, 1\] must be a non-empty list of keys of ARITHMETIC_LEVELS \[1, 2, 3, 4\]"),
        (dict(levels=[]), r"levels=\[\] must be a non-empty list"),
        (dict(size=2, levels=[1, 2, 3]), r"size=2 must be at least the number of levels \(3\)"),
    ],
)
def test_arithmetic_curriculum_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        arithmetic_curriculum_dataset(**kwargs)
