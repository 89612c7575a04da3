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

from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets import Dataset, concatenate_datasets, load_dataset

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
    """Put a problem into `template` and return it as a one-message user conversation or as a plain string.

    Args:
        text (`str`):
            The bare problem.
        conversational (`bool`, *optional*, defaults to `True`):
            Return `[{"role": "user", "content": ...}]` (TRL's conversational format) instead of the string.
        template (`str`, *optional*, defaults to `MATH_PROMPT_TEMPLATE`):
            Format string with a `{problem}` field.

    Returns:
        `str` or `list[dict]`: The prompt.
    """
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


def _load_benchmark(
    path: str | Path | None,
    hub_id: str,
    hub_config: str | None,
    split: str,
    problem_column: str,
    answer_column: str,
    source: str,
    conversational: bool,
) -> Dataset:
    table, origin = _load_table(path, hub_id, hub_config, split)
    _require_columns(table, origin, [problem_column, answer_column])
    answers = [normalize_answer(value) for value in table[answer_column]]
    return _build(table[problem_column], answers, source, conversational, MATH_PROMPT_TEMPLATE)


def load_aime24(path: str | Path | None = None, conversational: bool = True) -> Dataset:
    """AIME 2024 (`Maxwell-Jia/AIME_2024`, 30 problems; Hub columns `Problem`, integer `Answer`).

    Args:
        path (`str` or `Path`, *optional*):
            Local `.json`, `.jsonl` or `.parquet` file in the Hub schema. `None` downloads from the Hub.
        conversational (`bool`, *optional*, defaults to `True`):
            Conversational prompts instead of plain strings.

    Returns:
        [`~datasets.Dataset`]: Columns `prompt`, `answer`, `source` (`"aime24"`).
    """
    return _load_benchmark(path, "Maxwell-Jia/AIME_2024", None, "train", "Problem", "Answer", "aime24", conversational)


def load_aime25(path: str | Path | None = None, conversational: bool = True) -> Dataset:
    """AIME 2025 (`yentinglin/aime_2025`, 30 problems; Hub columns `problem`, `answer`).

    Args:
        path (`str` or `Path`, *optional*):
            Local `.json`, `.jsonl` or `.parquet` file in the Hub schema. `None` downloads from the Hub.
        conversational (`bool`, *optional*, defaults to `True`):
            Conversational prompts instead of plain strings.

    Returns:
        [`~datasets.Dataset`]: Columns `prompt`, `answer`, `source` (`"aime25"`).
    """
    return _load_benchmark(path, "yentinglin/aime_2025", None, "train", "problem", "answer", "aime25", conversational)


def load_math500(path: str | Path | None = None, conversational: bool = True) -> Dataset:
    """MATH-500 (`HuggingFaceH4/MATH-500`, split `test`, 500 problems; Hub columns `problem`, LaTeX `answer`).

    Args:
        path (`str` or `Path`, *optional*):
            Local `.json`, `.jsonl` or `.parquet` file in the Hub schema. `None` downloads from the Hub.
        conversational (`bool`, *optional*, defaults to `True`):
            Conversational prompts instead of plain strings.

    Returns:
        [`~datasets.Dataset`]: Columns `prompt`, `answer`, `source` (`"math500"`).
    """
    return _load_benchmark(
        path, "HuggingFaceH4/MATH-500", None, "test", "problem", "answer", "math500", conversational
    )


def load_olympiadbench(path: str | Path | None = None, conversational: bool = True) -> Dataset:
    r"""OlympiadBench, English text-only math competition problems (`Hothan/OlympiadBench`, config
    `OE_TO_maths_en_COMP`, 674 problems).

    The Hub column `final_answer` is a list of LaTeX strings in `$...$` (e.g. `["$\\frac{1}{2}$"]`); the dollars are
    stripped and several answers are joined with `", "`, which math-verify reads as a set.

    Args:
        path (`str` or `Path`, *optional*):
            Local `.json`, `.jsonl` or `.parquet` file in the Hub schema (columns `question`, `final_answer`). `None`
            downloads from the Hub.
        conversational (`bool`, *optional*, defaults to `True`):
            Conversational prompts instead of plain strings.

    Returns:
        [`~datasets.Dataset`]: Columns `prompt`, `answer`, `source` (`"olympiadbench"`).
    """
    table, origin = _load_table(path, "Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train")
    _require_columns(table, origin, ["question", "final_answer"])
    answers = [", ".join(part.strip().strip("$").strip() for part in parts) for parts in table["final_answer"]]
    return _build(table["question"], answers, "olympiadbench", conversational, MATH_PROMPT_TEMPLATE)


def load_amc23(path: str | Path | None = None, conversational: bool = True) -> Dataset:
    """AMC 2023 (the 40 problems of 2023 in `AI-MO/aimo-validation-amc`; Hub columns `problem`, float `answer`, `url`).

    The Hub set also holds AMC 2022; rows are kept when their `url` contains `"2023"`.

    Args:
        path (`str` or `Path`, *optional*):
            Local `.json`, `.jsonl` or `.parquet` file in the Hub schema. `None` downloads from the Hub.
        conversational (`bool`, *optional*, defaults to `True`):
            Conversational prompts instead of plain strings.

    Returns:
        [`~datasets.Dataset`]: Columns `prompt`, `answer` (`27.0` becomes `"27"`), `source` (`"amc23"`).
    """
    table, origin = _load_table(path, "AI-MO/aimo-validation-amc", None, "train")
    _require_columns(table, origin, ["problem", "answer", "url"])
    table = table.filter(lambda url: "2023" in url, input_columns="url")
    answers = [normalize_answer(value) for value in table["answer"]]
    return _build(table["problem"], answers, "amc23", conversational, MATH_PROMPT_TEMPLATE)


# The paper's five evaluation benchmarks (§4), by the names used in logs and reports.
EVAL_BENCHMARKS: dict[str, Callable[..., Dataset]] = {
    "aime24": load_aime24,
    "aime25": load_aime25,
    "math500": load_math500,
    "olympiadbench": load_olympiadbench,
    "amc23": load_amc23,
}


def reasoning_gym_dataset(
    task: str,
    size: int,
    seed: int,
    conversational: bool = True,
    template: str = SHORT_ANSWER_PROMPT_TEMPLATE,
    **task_config: Any,
) -> Dataset:
    """A seeded procedural data set from [reasoning-gym](https://github.com/open-thought/reasoning-gym), offline.

    Questions are put in `template`; reasoning-gym's gold answers are what [`~trl_vcrl.rewards.accuracy_reward`]
    compares with.

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


# Graded arithmetic for small models, easiest first: (reasoning-gym task, task config). Measured with
# SmolLM2-135M-Instruct, SHORT_ANSWER_PROMPT_TEMPLATE, temperature 1, 24 new tokens: about 16% of completions correct at
# level 1, 7% at level 2, 2% at levels 3 and 4 (112, 112, 112, 64 samples). The model almost never boxes its answer;
# accuracy_reward's answer-line and last-number fallbacks find it. A mix gives groups of every reward variance.
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
