r"""Datasets for VCRL in one schema: the paper's training set, its five benchmarks, and offline arithmetic.

Every loader returns a [`~datasets.Dataset`] with the columns

- `prompt`: the problem in our prompt template, as a TRL conversation `[{"role": "user", "content": ...}]` (default)
  or as a plain string (`conversational=False`);
- `answer`: the gold answer as a string, the column [`~trl_vcrl.rewards.accuracy_reward`] reads;
- `source`: the name of the data set the row comes from;

and [`arithmetic_curriculum_dataset`] adds `level`. Hub loaders take `path=None` to download from the Hugging Face
Hub, or the path of a local `.json`, `.jsonl` or `.parquet` file in the same schema as the Hub data set (for offline
use and tests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, concatenate_datasets, load_dataset

logger = logging.getLogger(__name__)

# Our choice (the paper does not print its prompt): the "Qwen-Math" instruction commonly used to RL-train base models
# on math with a boxed-answer verifier.
MATH_PROMPT_TEMPLATE = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
# For small instruct models on short procedural problems: no reasoning asked for, so completions stay a few tokens.
SHORT_ANSWER_PROMPT_TEMPLATE = "{problem}\nReply with only the final answer in \\boxed{{}}."
# The bare problem: reasoning-gym's arithmetic questions end in "=", so as a plain-text prompt the model's most likely
# continuation is the number itself.
BARE_PROMPT_TEMPLATE = "{problem}"

# DAPO-Math-17k wraps every problem in this instruction; we strip it and apply MATH_PROMPT_TEMPLATE instead.
DAPO_PROMPT_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
)
DAPO_PROMPT_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'

_LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def format_prompt(text: str, conversational: bool = True, template: str = MATH_PROMPT_TEMPLATE) -> str | list[dict]:
    """`template` filled with the problem `text`, as a one-message user conversation (TRL's conversational format) or,
    with `conversational=False`, as a plain string."""
    content = template.format(problem=text)
    return [{"role": "user", "content": content}] if conversational else content


def normalize_answer(value: Any) -> str:
    """Gold answer as a string: integral floats lose their `.0` (`27.0` -> `"27"`), strings lose outer whitespace."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _load_table(path: str | Path | None, hub_id: str, hub_config: str | None, split: str) -> tuple[Dataset, str]:
    """Load a Hub data set split, or a local file as that split. Returns the data set and where it came from."""
    if path is None:
        return load_dataset(hub_id, hub_config, split=split), hub_id
    path = Path(path)
    file_format = _LOCAL_FORMATS.get(path.suffix)
    if file_format is None:
        raise ValueError(f"Cannot load {path}: suffix {path.suffix!r} is not one of {sorted(_LOCAL_FORMATS)}.")
    return load_dataset(file_format, data_files={split: str(path)}, split=split), str(path)


def _require_columns(dataset: Dataset, origin: str, required: list[str]) -> None:
    missing = [column for column in required if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{origin} is missing column(s) {missing}: expected columns {required}, found {dataset.column_names}."
        )


def _build(problems: list[str], answers: list[str], source: str, conversational: bool, template: str) -> Dataset:
    return Dataset.from_dict(
        {
            "prompt": [format_prompt(problem, conversational, template) for problem in problems],
            "answer": answers,
            "source": [source] * len(problems),
        }
    )


def load_dapo_math(path: str | Path | None = None, split: str = "train", conversational: bool = True) -> Dataset:
    """DAPO-Math-17k (`BytedTsinghua-SIA/DAPO-Math-17k`), the paper's training set, de-duplicated.

    The Hub data set repeats each of its ~17k problems many times and wraps each in DAPO's own "Answer:" instruction.
    We strip that instruction (`DAPO_PROMPT_PREFIX` / `DAPO_PROMPT_SUFFIX`), keep the first row of each problem, put
    the problem in `MATH_PROMPT_TEMPLATE` and take the gold answer from `reward_model["ground_truth"]`.

    Args:
        path (`str` or `Path`, *optional*):
            Local `.json`, `.jsonl` or `.parquet` file in the Hub schema (columns `prompt`, a one-message user
            conversation, and `reward_model`, a dict with `ground_truth`). `None` downloads from the Hub.
        split (`str`, *optional*, defaults to `"train"`):
            Split to load (a local file is loaded as this split).
        conversational (`bool`, *optional*, defaults to `True`):
            Conversational prompts instead of plain strings.

    Returns:
        [`~datasets.Dataset`]: Columns `prompt`, `answer`, `source` (`"dapo_math"`), one row per distinct problem.
    """
    table, origin = _load_table(path, "BytedTsinghua-SIA/DAPO-Math-17k", None, split)
    _require_columns(table, origin, ["prompt", "reward_model"])
    problems, answers, seen = [], [], set()
    # The Hub file holds ~1.8M rows; reading two columns in batches keeps memory at the size of one batch.
    batches = table.select_columns(["prompt", "reward_model"]).iter(batch_size=10_000)
    rows = (row for batch in batches for row in zip(batch["prompt"], batch["reward_model"]))
    for row_index, (messages, reward_model) in enumerate(rows):
        content = messages[0]["content"]
        if not (content.startswith(DAPO_PROMPT_PREFIX) and content.endswith(DAPO_PROMPT_SUFFIX)):
            raise ValueError(
                f"{origin} row {row_index}: prompt content does not start with DAPO_PROMPT_PREFIX and end with "
                f"DAPO_PROMPT_SUFFIX: {content[:80]!r}..."
            )
        problem = content[len(DAPO_PROMPT_PREFIX) : -len(DAPO_PROMPT_SUFFIX)].strip()
        if problem not in seen:
            seen.add(problem)
            problems.append(problem)
            answers.append(normalize_answer(reward_model["ground_truth"]))
    return _build(problems, answers, "dapo_math", conversational, MATH_PROMPT_TEMPLATE)


def _join_dollar_answers(parts: list[str]) -> str:
    """OlympiadBench's answer list (`["$\\frac{1}{2}$"]`) as one string: dollars stripped, several answers joined with
    `", "`, which math-verify reads as a set."""
    return ", ".join(part.strip().strip("$").strip() for part in parts)


@dataclass(frozen=True)
class EvalBenchmark:
    """Where one of the paper's benchmarks lives on the Hub and how its rows map to `prompt`, `answer`, `source`.

    Args:
        hub_id (`str`):
            Hub data set.
        problem_column (`str`):
            Hub column of the problem text.
        answer_column (`str`):
            Hub column of the gold answer.
        split (`str`, *optional*, defaults to `"train"`):
            Hub split.
        hub_config (`str`, *optional*):
            Hub configuration.
        read_answer (`Callable`, *optional*, defaults to `normalize_answer`):
            Gold answer string from a value of `answer_column`.
        url_contains (`str`, *optional*):
            Keep only the rows whose `url` column contains this string.
    """

    hub_id: str
    problem_column: str
    answer_column: str
    split: str = "train"
    hub_config: str | None = None
    read_answer: Callable[[Any], str] = normalize_answer
    url_contains: str | None = None


# The paper's five evaluation benchmarks (§4), by the names used in logs and reports.
EVAL_BENCHMARKS: dict[str, EvalBenchmark] = {
    "aime24": EvalBenchmark("Maxwell-Jia/AIME_2024", "Problem", "Answer"),
    "aime25": EvalBenchmark("yentinglin/aime_2025", "problem", "answer"),
    "math500": EvalBenchmark("HuggingFaceH4/MATH-500", "problem", "answer", split="test"),
    # English text-only competition problems.
    "olympiadbench": EvalBenchmark(
        "Hothan/OlympiadBench",
        "question",
        "final_answer",
        hub_config="OE_TO_maths_en_COMP",
        read_answer=_join_dollar_answers,
    ),
    # The Hub set also holds AMC 2022.
    "amc23": EvalBenchmark("AI-MO/aimo-validation-amc", "problem", "answer", url_contains="2023"),
}


def load_benchmark(name: str, path: str | Path | None = None, conversational: bool = True) -> Dataset:
    """One of the paper's evaluation benchmarks, from the Hub or a local file in its Hub schema.

    Args:
        name (`str`):
            A key of `EVAL_BENCHMARKS`: `"aime24"`, `"aime25"`, `"math500"`, `"olympiadbench"` or `"amc23"`.
        path (`str` or `Path`, *optional*):
            Local `.json`, `.jsonl` or `.parquet` file in the benchmark's Hub schema. `None` downloads from the Hub.
        conversational (`bool`, *optional*, defaults to `True`):
            Conversational prompts instead of plain strings.

    Returns:
        [`~datasets.Dataset`]: Columns `prompt`, `answer`, `source` (`name`).
    """
    if name not in EVAL_BENCHMARKS:
        raise ValueError(f"Unknown benchmark {name!r}; allowed values are {sorted(EVAL_BENCHMARKS)}.")
    benchmark = EVAL_BENCHMARKS[name]
    table, origin = _load_table(path, benchmark.hub_id, benchmark.hub_config, benchmark.split)
    columns = [benchmark.problem_column, benchmark.answer_column] + ([] if benchmark.url_contains is None else ["url"])
    _require_columns(table, origin, columns)
    if benchmark.url_contains is not None:
        table = table.filter(lambda url: benchmark.url_contains in url, input_columns="url")
    answers = [benchmark.read_answer(value) for value in table[benchmark.answer_column]]
    return _build(table[benchmark.problem_column], answers, name, conversational, MATH_PROMPT_TEMPLATE)


def reasoning_gym_dataset(
    task: str,
    size: int,
    seed: int,
    conversational: bool = True,
    template: str = SHORT_ANSWER_PROMPT_TEMPLATE,
    **task_config: Any,
) -> Dataset:
    """A seeded procedural data set from [reasoning-gym](https://github.com/open-thought/reasoning-gym), offline.

    Questions are put in `template`; reasoning-gym's gold answers are what
    [`~trl_vcrl.rewards.accuracy_reward`] compares with.

    Args:
        task (`str`):
            reasoning-gym task name, e.g. `"chain_sum"`, `"basic_arithmetic"`, `"fraction_simplification"`.
        size (`int`):
            Number of rows.
        seed (`int`):
            Generator seed; the same seed and configuration give the same rows.
        conversational (`bool`, *optional*, defaults to `True`):
            Conversational prompts instead of plain strings.
        template (`str`, *optional*, defaults to `SHORT_ANSWER_PROMPT_TEMPLATE`):
            Format string with a `{problem}` field.
        **task_config:
            Fields of the task's reasoning-gym config, e.g. `min_terms=2, max_digits=1` for `chain_sum`.

    Returns:
        [`~datasets.Dataset`]: Columns `prompt`, `answer`, `source` (the task name).
    """
    try:
        import reasoning_gym
    except ImportError as error:
        raise ImportError("reasoning_gym_dataset needs reasoning-gym: pip install 'trl-vcrl[offline]'.") from error

    items = list(reasoning_gym.create_dataset(task, size=size, seed=seed, **task_config))
    problems = [item["question"] for item in items]
    answers = [normalize_answer(item["answer"]) for item in items]
    return _build(problems, answers, task, conversational, template)


# Graded arithmetic for small models, easiest first: (reasoning-gym task, task config). A mix gives groups of every
# reward variance; docs/data.md has the measured accuracy per level.
ARITHMETIC_LEVELS: dict[int, tuple[str, dict[str, Any]]] = {
    1: ("chain_sum", {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}),
    2: ("chain_sum", {"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 1}),
    3: ("chain_sum", {"min_terms": 2, "max_terms": 2, "min_digits": 2, "max_digits": 2}),
    4: ("basic_arithmetic", {"min_terms": 3, "max_terms": 3, "min_digits": 2, "max_digits": 2}),
}


def arithmetic_curriculum_dataset(
    size: int = 512,
    seed: int = 0,
    levels: list[int] | None = None,
    conversational: bool = True,
    template: str = SHORT_ANSWER_PROMPT_TEMPLATE,
) -> Dataset:
    """An even, shuffled mix of the `ARITHMETIC_LEVELS` arithmetic levels: offline data of graded difficulty.

    Args:
        size (`int`, *optional*, defaults to `512`):
            Number of rows; split as evenly as possible between the levels.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the generators (level `l` uses `seed + l`) and of the shuffle.
        levels (`list[int]`, *optional*):
            Keys of `ARITHMETIC_LEVELS` to include. `None` includes all.
        conversational (`bool`, *optional*, defaults to `True`):
            Conversational prompts instead of plain strings.
        template (`str`, *optional*, defaults to `SHORT_ANSWER_PROMPT_TEMPLATE`):
            Format string with a `{problem}` field.

    Returns:
        [`~datasets.Dataset`]: Columns `prompt`, `answer`, `source` (the reasoning-gym task), `level`.
    """
    levels = sorted(ARITHMETIC_LEVELS) if levels is None else levels
    unknown = [level for level in levels if level not in ARITHMETIC_LEVELS]
    if unknown or not levels:
        raise ValueError(
            f"levels={levels} must be a non-empty list of keys of ARITHMETIC_LEVELS {sorted(ARITHMETIC_LEVELS)}."
        )
    if size < len(levels):
        raise ValueError(f"size={size} must be at least the number of levels ({len(levels)}).")
    parts = []
    for index, level in enumerate(levels):
        level_size = size // len(levels) + (index < size % len(levels))
        task, task_config = ARITHMETIC_LEVELS[level]
        part = reasoning_gym_dataset(task, level_size, seed + level, conversational, template, **task_config)
        parts.append(part.add_column("level", [level] * level_size))
    return concatenate_datasets(parts).shuffle(seed=seed)


def prompt_token_lengths(
    dataset: Dataset, tokenizer, chat_template_kwargs: dict | None = None, batch_size: int = 1000
) -> list[int]:
    """Token length of every prompt as GRPOTrainer feeds it to generation: a conversation through the chat template
    with the assistant's generation prompt appended, a string tokenized as it is. Arguments as in
    [`drop_long_prompts`]; `batch_size` prompts are tokenized per call.
    """
    lengths = []
    for start in range(0, len(dataset), batch_size):
        prompts = dataset[start : start + batch_size]["prompt"]
        if isinstance(prompts[0], str):
            input_ids = tokenizer(text=prompts)["input_ids"]
        else:
            input_ids = tokenizer.apply_chat_template(
                prompts, add_generation_prompt=True, tokenize=True, return_dict=True, **(chat_template_kwargs or {})
            )["input_ids"]
        lengths += [len(ids) for ids in input_ids]
    return lengths


def drop_long_prompts(
    dataset: Dataset, tokenizer, max_prompt_length: int, chat_template_kwargs: dict | None = None
) -> Dataset:
    """Drop the rows whose templated prompt is longer than `max_prompt_length` tokens, and log how many went.

    TRL 1.16 does not limit prompt length: a vLLM engine asked for a prompt plus `max_completion_length` tokens beyond
    its context length refuses the request, which ends the run mid-training. Dropping long prompts at load time (rather
    than truncating them, which would cut the problem statement) keeps every prompt within
    `max_prompt_length + max_completion_length`.

    Args:
        dataset ([`~datasets.Dataset`]):
            A data set with a `prompt` column.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            The policy's tokenizer.
        max_prompt_length (`int`):
            Longest prompt kept, in tokens after templating.
        chat_template_kwargs (`dict`, *optional*):
            Extra arguments of `apply_chat_template`, as `GRPOConfig.chat_template_kwargs`.

    Returns:
        [`~datasets.Dataset`]: The rows whose prompts fit.
    """
    if max_prompt_length < 1:
        raise ValueError(f"max_prompt_length must be >= 1, got {max_prompt_length}.")
    lengths = prompt_token_lengths(dataset, tokenizer, chat_template_kwargs)
    keep = [index for index, length in enumerate(lengths) if length <= max_prompt_length]
    if not keep:
        raise ValueError(
            f"max_prompt_length={max_prompt_length}: every one of the {len(dataset)} prompts is longer (shortest: "
            f"{min(lengths)} tokens after templating)."
        )
    dropped = len(dataset) - len(keep)
    if dropped:
        logger.warning(
            f"Dropped {dropped} of {len(dataset)} training prompts longer than max_prompt_length={max_prompt_length} "
            f"tokens after templating (longest: {max(lengths)})."
        )
        dataset = dataset.select(keep)
    else:
        logger.info(f"All {len(dataset)} training prompts fit in max_prompt_length={max_prompt_length} tokens.")
    return dataset
