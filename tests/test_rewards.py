"""Tests of trl_vcrl.rewards: math-verified accuracy on tricky answer pairs, answer extraction order, format reward,
and bounded time on pathological answers on the main thread, in a worker thread and in a worker process."""

import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from trl_vcrl import rewards
from trl_vcrl.data import ARITHMETIC_LEVELS, reasoning_gym_dataset
from trl_vcrl.rewards import accuracy_reward, format_reward

# (completion, gold, expected reward)
EQUIVALENT_ANSWERS = [
    (r"So $x = \boxed{0.5}$.", r"\frac{1}{2}", 1.0),
    (r"The result is \boxed{\frac{1}{2}}", "0.5", 1.0),
    (r"\boxed{\dfrac{1}{2}}", "1/2", 1.0),
    (r"\boxed{2\sqrt{2}}", r"\sqrt{8}", 1.0),
    (r"\boxed{\{2, 1\}}", "{1,2}", 1.0),
    (r"\boxed{2, 1}", "{1,2}", 1.0),
    (r"\boxed{27}", "27.0", 1.0),
    (r"\boxed{-4057}", "-4057", 1.0),
    (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)", 1.0),
    (r"\boxed{x^2 + 1}", "$1 + x^2$", 1.0),
    (r"\boxed{\text{(C)}}", r"\text{(C)}", 1.0),
]
WRONG_ANSWERS = [
    (r"\boxed{28}", "27"),
    (r"\boxed{0.51}", r"\frac{1}{2}"),
    (r"\boxed{\{1, 3\}}", "{1,2}"),
    (r"\boxed{2\sqrt{3}}", r"\sqrt{8}"),
    (r"\boxed{(2, 1)}", "(1, 2)"),
]


@pytest.mark.parametrize("completion, gold, expected", EQUIVALENT_ANSWERS)
def test_equivalent_answers_score_one(completion, gold, expected):
    assert accuracy_reward([completion], answer=[gold]) == [expected]


@pytest.mark.parametrize("completion, gold", WRONG_ANSWERS)
def test_wrong_answers_score_zero(completion, gold):
    assert accuracy_reward([completion], answer=[gold]) == [0.0]


def test_empty_and_garbage_completions_score_zero():
    completions = [
        "",
        "   ",
        "I do not know.",
        r"\boxed{}",
        r"\boxed{\frac{",
        "}}}{{{\\boxed",
        r"\boxed{\text{banana}}",
    ]
    assert accuracy_reward(completions, answer=["27"] * len(completions)) == [0.0] * len(completions)


def test_unparseable_gold_scores_zero():
    assert accuracy_reward([r"\boxed{27}"], answer=[r"\frac{"]) == [0.0]


def test_last_boxed_answer_wins():
    completions = [
        r"First guess \boxed{3}, but recheck: \boxed{27}",
        r"First guess \boxed{27}, but recheck: \boxed{3}",
        r"Answer: 27. Boxed: \boxed{3}",  # a box beats an answer line anywhere
        r"\boxed{27} and an empty box \boxed{}",  # empty boxes are not answers
    ]
    assert accuracy_reward(completions, answer=["27"] * 4) == [1.0, 0.0, 0.0, 1.0]


def test_fallbacks_answer_line_then_last_number():
    completions = [
        "The answer is 27",
        "3 + 4 = 7, so the answer is $27$.",  # the answer line beats the last number
        "Answer: 27 because 3 * 9 = 27 and 9 * 3 = 27, not 28",
        "3 * 9 = 27",  # no box, no answer line: last number
        "3 * 9 = 27 apples, or 28",
        "I counted 1,000 apples",
        "so half of it, 1/2",
    ]
    golds = ["27", "27", "27", "27", "27", "1000", "0.5"]
    assert accuracy_reward(completions, answer=golds) == [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]


def test_conversational_completions_read_last_message():
    completions = [
        [{"role": "assistant", "content": r"It is \boxed{\frac{1}{2}}."}],
        [{"role": "assistant", "content": r"It is \boxed{\frac{1}{3}}."}],
        [{"role": "assistant", "content": r"\boxed{99}"}, {"role": "assistant", "content": r"\boxed{0.5}"}],
    ]
    assert accuracy_reward(completions, answer=["0.5", "0.5", "0.5"]) == [1.0, 0.0, 1.0]


def test_gold_answers_of_every_kind_of_source():
    # AIME ints, AMC floats normalised to "27", OlympiadBench multi-answers joined with ", ", MATH LaTeX.
    completions = [r"\boxed{204}", r"\boxed{27}", r"\boxed{2, 1}", r"\boxed{\frac{14}{3}}"]
    assert accuracy_reward(completions, answer=[204, "27", "1, 2", r"\frac{14}{3}"]) == [1.0] * 4


@pytest.mark.parametrize("level", sorted(ARITHMETIC_LEVELS))
def test_reasoning_gym_gold_answers_are_accepted(level):
    task, config = ARITHMETIC_LEVELS[level]
    golds = reasoning_gym_dataset(task, size=20, seed=3, **config)["answer"]
    right = accuracy_reward([f"The result is \\boxed{{{gold}}}." for gold in golds], answer=golds)
    off_by_one = accuracy_reward([f"\\boxed{{{int(gold) + 1}}}" for gold in golds], answer=golds)
    assert right == [1.0] * 20
    assert off_by_one == [0.0] * 20


def test_accuracy_reward_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        accuracy_reward([r"\boxed{1}", r"\boxed{2}"], answer=["1"])


def test_format_reward_wants_exactly_one_closed_nonempty_box():
    completions = [
        r"So the answer is $\boxed{27}$.",
        r"\boxed{\{1, 2\}}",
        r"no box at all",
        r"\boxed{}",
        r"\boxed{ }",
        r"\boxed{3} or \boxed{4}",
        r"\boxed{\boxed{3}}",
        r"\boxed{3",
        [{"role": "assistant", "content": r"\boxed{\frac{1}{2}}"}],
    ]
    assert format_reward(completions) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


PATHOLOGICAL_COMPLETIONS = [
    r"\boxed{9^{9^{9^{9^{9}}}}}",  # power tower: sympy would never finish comparing it
    r"\boxed{9^{99999999}}",
    r"\boxed{9^{99999} - 9^{99999} + 27}",  # equals 27, but refused: 190k digits to evaluate
    r"\boxed{10000000!}",
    r"\boxed{\binom{1000000}{500000}}",  # latex2sympy evaluates binomials while parsing
    r"\boxed{\Gamma(9999999)}",
    r"\boxed{" + "1+" * 50_000 + "1}",  # giant expression
    "\\boxed{" * 20_000 + "28",  # 20k unclosed boxes: extraction must stay linear
]


def _score_pathological():
    started = time.perf_counter()
    scores = accuracy_reward(PATHOLOGICAL_COMPLETIONS, answer=["27"] * len(PATHOLOGICAL_COMPLETIONS))
    return scores, time.perf_counter() - started


def _assert_refused_quickly(scores, seconds):
    assert scores == [0.0] * len(PATHOLOGICAL_COMPLETIONS)
    assert seconds < 20, f"pathological answers took {seconds:.1f} s"


def test_pathological_answers_score_zero_quickly_on_main_thread():
    _assert_refused_quickly(*_score_pathological())


def test_pathological_answers_score_zero_quickly_in_worker_thread():
    with ThreadPoolExecutor(max_workers=1) as pool:
        _assert_refused_quickly(*pool.submit(_score_pathological).result(timeout=60))


def test_pathological_answers_score_zero_quickly_in_worker_process():
    # spawn, not fork: forking a process that has loaded torch's thread pools can deadlock
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        # the first call pays for starting the worker and importing the package; it is not what is timed
        assert pool.submit(accuracy_reward, [r"\boxed{0.5}"], [r"\frac{1}{2}"]).result(timeout=120) == [1.0]
        started = time.perf_counter()
        scores = pool.submit(accuracy_reward, PATHOLOGICAL_COMPLETIONS, ["27"] * len(PATHOLOGICAL_COMPLETIONS))
        _assert_refused_quickly(scores.result(timeout=60), time.perf_counter() - started)


def test_worker_thread_scores_right_answers():
    # math-verify's default signal timeouts raise ValueError off the main thread: they must be switched off there
    with ThreadPoolExecutor(max_workers=1) as pool:
        scores = pool.submit(accuracy_reward, [r"\boxed{0.5}", r"\boxed{\sqrt{8}}"], [r"\frac{1}{2}", r"2\sqrt{2}"])
        assert scores.result(timeout=60) == [1.0, 1.0]


def test_signal_timeouts_only_on_main_thread(monkeypatch):
    timeouts = []
    original_parse = rewards.parse

    def recording_parse(text, parsing_timeout, **kwargs):
        timeouts.append((threading.current_thread() is threading.main_thread(), parsing_timeout))
        return original_parse(text, parsing_timeout=parsing_timeout, **kwargs)

    monkeypatch.setattr(rewards, "parse", recording_parse)
    accuracy_reward([r"\boxed{1}"], answer=["1"])
    worker = threading.Thread(target=accuracy_reward, args=([r"\boxed{1}"], ["1"]))
    worker.start()
    worker.join()
    assert timeouts == [(True, rewards.PARSE_TIMEOUT_SECONDS)] * 2 + [(False, None)] * 2
