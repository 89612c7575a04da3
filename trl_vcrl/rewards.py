r"""Math reward functions for VCRL training and evaluation, in TRL's reward-function signature.

[`accuracy_reward`] is the paper's verifier: `1.0` when the final answer of a completion is mathematically equal to
the gold answer (checked with [math-verify](https://github.com/huggingface/Math-Verify)), else `0.0`.
[`format_reward`] checks that a completion boxes exactly one answer.

Both take `completions` as plain strings or as conversational message lists (`[{"role": "assistant", "content":
...}]`), and the gold answers from the dataset column `answer` (see `trl_vcrl.data`).

Safety: math-verify bounds its work with `signal.alarm`, which only works on the main thread (where
[`~trl.GRPOTrainer`] calls reward functions). In any other thread those timeouts are switched off, so answers that
would take sympy unbounded time (power towers, huge factorials, giant expressions) are refused before and after
parsing on every thread: such an answer scores `0.0`. Any error while scoring scores `0.0` too; a broken answer never
stops training.
"""

from __future__ import annotations

import math
import re
import threading
from typing import Any

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException
from sympy import Basic, Pow, binomial, factorial
from sympy.matrices import MatrixBase

# Longest answer (boxed content, answer line, number) that is parsed at all. Real answers are far shorter; longer ones
# are either degenerate generations or attempts to make the parser grind.
MAX_ANSWER_CHARS = 256
# Largest number of decimal digits a parsed answer may need when evaluated (`2^{10000}` has 3011, `99999!` 456570).
# Checking equality of bigger numbers can take sympy minutes and cannot be interrupted off the main thread.
MAX_ANSWER_DIGITS = 100_000
# math-verify's own timeouts, used on the main thread only (see the module docstring).
PARSE_TIMEOUT_SECONDS = 3
VERIFY_TIMEOUT_SECONDS = 3

_BOXED_OR_BRACE = re.compile(r"\\boxed\{|\\[{}]|[{}]")
_ANSWER_LINE = re.compile(r"answer(?:\s*:|\s+is\b)[^\n]*", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")
# latex2sympy evaluates these while parsing (`\binom{1000000}{500000}` is computed in full), before any size check on
# the parsed answer can run: an answer using them is refused if it also holds a power or a number of 5+ digits.
_EAGERLY_EVALUATED = re.compile(r"\\(?:[dt]?binom|choose|Gamma|gamma|operatorname|det)\b")
_LARGE_OR_POWER = re.compile(r"\d{5,}|\^")


def _completion_text(completion: str | list[dict[str, Any]]) -> str:
    """The text of a completion: the string itself, or the content of the last message of a conversation."""
    if isinstance(completion, str):
        return completion
    return completion[-1]["content"]


def _boxed_contents(text: str) -> list[str]:
    r"""Contents of every complete `\boxed{...}` in `text`, in the order their closing braces appear.

    One linear pass over the braces, so a long or adversarial completion costs no more than its length.
    """
    contents = []
    open_braces = []  # (content start, whether this brace opened a \boxed)
    for token in _BOXED_OR_BRACE.finditer(text):
        brace = token.group()
        if brace == "\\boxed{":
            open_braces.append((token.end(), True))
        elif brace == "{":
            open_braces.append((token.end(), False))
        elif brace == "}" and open_braces:
            start, is_boxed = open_braces.pop()
            if is_boxed:
                contents.append(text[start : token.start()])
        # `\{` and `\}` are literal set braces inside an answer, not grouping
    return contents


def _answer_text(completion: str) -> tuple[str, bool] | None:
    r"""The final answer of a completion, as `(text, is_latex)`, or `None` when it gives none.

    Taken from the first of these that is present: the last non-empty `\boxed{...}`; the text from the last "answer:"
    or "answer is" to the end of its line (given to math-verify with the anchor, so its answer patterns apply); the
    last number in the text.
    """
    boxed = [content for content in _boxed_contents(completion) if content.strip()]
    if boxed:
        return boxed[-1], True
    answer_lines = _ANSWER_LINE.findall(completion)
    if answer_lines:
        # the answer follows the anchor closely; the rest of a long line is explanation
        return answer_lines[-1][:MAX_ANSWER_CHARS], False
    numbers = _NUMBER.findall(completion)
    if numbers:
        return numbers[-1].replace(",", ""), True
    return None


def _magnitude(expression: Any) -> float:
    """Upper bound on the number of decimal digits any part of `expression` needs when evaluated.

    Each number counts its digits, symbols and constants count 1, sums and products add their terms' counts, powers
    multiply the base's count by the exponent's size, factorials and binomials use their argument's size.
    """
    if isinstance(expression, MatrixBase):
        return sum(_magnitude(entry) for entry in expression)
    if not isinstance(expression, Basic):
        return 0.0
    if expression.is_Integer:
        return math.log10(abs(int(expression)) + 1)
    if expression.is_Rational:
        return math.log10(abs(expression.p) + 1) + math.log10(expression.q + 1)
    if expression.is_Float:
        return math.log10(abs(float(expression)) + 1)
    if not expression.args:
        return 1.0
    if isinstance(expression, (Pow, factorial, binomial)):
        # the size of the exponent (or n) is 10**digits; beyond that bound the answer is refused anyway
        arguments = expression.args[1:] if isinstance(expression, Pow) else expression.args
        argument_digits = max(_magnitude(argument) for argument in arguments)
        if argument_digits > math.log10(MAX_ANSWER_DIGITS):
            return math.inf
        size = 10**argument_digits
        if isinstance(expression, Pow):
            return _magnitude(expression.base) * size
        return size * max(argument_digits, 1.0)
    return sum(_magnitude(argument) for argument in expression.args)


def _parse_answer(text: str, is_latex: bool, timeout_seconds: int | None) -> list:
    """Parse an answer with math-verify, or return `[]` when it is empty, too big, or unparseable."""
    text = text.strip()
    if not text or len(text) > MAX_ANSWER_CHARS:
        return []
    if _EAGERLY_EVALUATED.search(text) and _LARGE_OR_POWER.search(text):
        return []
    if is_latex:
        # boxing makes math-verify read the whole string as one LaTeX answer: `{1,2}`, `0.5`, `\frac{1}{2}`, `27`
        parsed = parse(
            f"\\boxed{{{text}}}", extraction_config=[LatexExtractionConfig()], parsing_timeout=timeout_seconds
        )
    else:
        parsed = parse(
            text,
            extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
            parsing_timeout=timeout_seconds,
        )
    if any(_magnitude(expression) > MAX_ANSWER_DIGITS for expression in parsed):
        return []
    return parsed


def _score(completion: str, gold: Any) -> float:
    on_main_thread = threading.current_thread() is threading.main_thread()
    parse_timeout = PARSE_TIMEOUT_SECONDS if on_main_thread else None
    verify_timeout = VERIFY_TIMEOUT_SECONDS if on_main_thread else None
    try:
        prediction = _answer_text(completion)
        if prediction is None:
            return 0.0
        gold_parsed = _parse_answer(str(gold).strip().strip("$"), True, parse_timeout)
        prediction_parsed = _parse_answer(*prediction, parse_timeout)
        if not gold_parsed or not prediction_parsed:
            return 0.0
        return float(verify(gold_parsed, prediction_parsed, timeout_seconds=verify_timeout))
    except (Exception, TimeoutException):  # TimeoutException derives from BaseException, not Exception
        return 0.0


def accuracy_reward(completions: list[str] | list[list[dict[str, Any]]], answer: list[Any], **kwargs) -> list[float]:
    r"""Binary math-verification reward: `1.0` if a completion's final answer equals the gold answer, else `0.0`.

    The final answer is the content of the last `\boxed{...}`; without one, the last "Answer: ..." / "... answer is
    ..." line; without that, the last number in the completion. Gold answers are read as LaTeX (`"27"`, `"0.5"`,
    `"\\frac{1}{2}"`, `"{1,2}"`, `"$x^2$"`); equality is math-verify's (`\frac{1}{2}` equals `0.5`, `{1,2}` equals
    `{2,1}`, `2\sqrt{2}` equals `\sqrt{8}`).

    Unparseable or oversized answers, unparseable gold answers, timeouts and errors all score `0.0`. Answers longer
    than `MAX_ANSWER_CHARS` characters or needing more than `MAX_ANSWER_DIGITS` digits are refused on every thread,
    so a completion scores the same wherever it is scored; this is what bounds the time off the main thread, where
    math-verify's signal timeouts cannot run. On the main thread those timeouts (`PARSE_TIMEOUT_SECONDS`,
    `VERIFY_TIMEOUT_SECONDS`) apply as well.

    Args:
        completions (`list[str]` or `list[list[dict[str, Any]]]`):
            Completions as strings, or as conversations whose last message holds the answer.
        answer (`list[Any]`):
            Gold answers, one per completion (the dataset's `answer` column).
        **kwargs:
            Other dataset columns and trainer arguments; unused.

    Returns:
        `list[float]`: `1.0` or `0.0` per completion.

    Example:
    ```python
    >>> from trl_vcrl.rewards import accuracy_reward

    >>> accuracy_reward([r"So the result is \boxed{\frac{1}{2}}.", "The answer is 3."], answer=["0.5", "4"])
    [1.0, 0.0]
    ```
    """
    return [_score(_completion_text(completion), gold) for completion, gold in zip(completions, answer, strict=True)]


def format_reward(completions: list[str] | list[list[dict[str, Any]]], **kwargs) -> list[float]:
    r"""Format reward: `1.0` if a completion boxes exactly one answer, else `0.0`.

    The completion must contain `\boxed` exactly once, with balanced braces and non-blank content. No box, an empty
    box, an unclosed box, several boxes (even nested) all score `0.0`. Whether the boxed answer is right is
    [`accuracy_reward`]'s job.

    Args:
        completions (`list[str]` or `list[list[dict[str, Any]]]`):
            Completions as strings, or as conversations whose last message holds the answer.
        **kwargs:
            Dataset columns and trainer arguments; unused.

    Returns:
        `list[float]`: `1.0` or `0.0` per completion.
    """
    rewards = []
    for completion in completions:
        text = _completion_text(completion)
        contents = _boxed_contents(text)
        single_box = text.count("\\boxed") == 1 and len(contents) == 1 and contents[0].strip() != ""
        rewards.append(float(single_box))
    return rewards
