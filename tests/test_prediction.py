"""Unit tests of the TRL-free rollout-economy pieces: pass probabilities, prompt history, pre-rollout screen, refill
sizing and the prediction tally."""

import itertools
import json
import math
import random
from fractions import Fraction

import pytest

from trl_vcrl.curriculum import normalized_variance
from trl_vcrl.prediction import (
    ANY_VARIANCE,
    PredictionTally,
    PromptHistory,
    RolloutScreen,
    pass_probability,
    passing_counts,
    refill_groups,
)

HUGE = 1e12  # Beta counts this large pin the pass rate: the beta-binomial becomes a binomial


def binary_group(k, n):
    return [1.0] * k + [0.0] * (n - k)


@pytest.mark.parametrize("group_size", range(2, 33))
def test_passing_counts_agree_with_normalized_variance(group_size):
    exact_values = sorted({normalized_variance(binary_group(k, group_size)) for k in range(group_size + 1)})
    for kappa in [0.0, 0.3, 0.5, 0.8, 0.9, 1.0, *exact_values]:  # the exact p values are the boundary cases
        expected = [k for k in range(group_size + 1) if normalized_variance(binary_group(k, group_size)) >= kappa]
        assert list(passing_counts(group_size, kappa)) == expected
    assert list(passing_counts(group_size, 0.0)) == list(range(group_size + 1))  # k = 0 and k = G pass (p = 0)


def test_passing_counts_examples():
    assert passing_counts(8, 0.8) == range(3, 6)
    assert passing_counts(16, 0.8) == range(5, 12)
    assert passing_counts(8, 0.3) == range(1, 8)
    assert passing_counts(16, 1.0) == range(8, 9)
    assert passing_counts(5, 1.0) == range(2, 4)  # odd G: both middle counts reach p = 1


@pytest.mark.parametrize(
    "group_size, kappa, match",
    [
        (1, 0.5, "group_size must be an integer >= 2, got 1"),
        (8.0, 0.5, r"group_size must be an integer >= 2, got 8\.0"),
        (8, 1.5, r"kappa must lie in \[0, 1\], got 1.5"),
        (8, -0.1, r"kappa must lie in \[0, 1\], got -0.1"),
        (8, math.nan, r"kappa must lie in \[0, 1\], got nan"),
    ],
)
def test_passing_counts_errors(group_size, kappa, match):
    with pytest.raises(ValueError, match=match):
        passing_counts(group_size, kappa)


def exact_beta_binomial_pass(successes: int, failures: int, group_size: int, kappa: float) -> Fraction:
    """Reference: the beta-binomial with integer parameters in exact rational arithmetic,
    B(a, b) = (a-1)! (b-1)! / (a+b-1)!."""

    def beta(a, b):
        return Fraction(math.factorial(a - 1) * math.factorial(b - 1), math.factorial(a + b - 1))

    passing = [k for k in range(group_size + 1) if normalized_variance(binary_group(k, group_size)) >= kappa]
    return sum(
        math.comb(group_size, k) * beta(k + successes, group_size - k + failures) / beta(successes, failures)
        for k in passing
    )


@pytest.mark.parametrize(
    "successes, failures, group_size, kappa",
    [(1, 1, 16, 0.8), (1, 17, 16, 0.8), (9, 9, 16, 0.8), (3, 40, 8, 0.3), (50, 2, 7, 0.5), (2, 5, 32, 0.0)],
)
def test_pass_probability_matches_exact_beta_binomial(successes, failures, group_size, kappa):
    expected = float(exact_beta_binomial_pass(successes, failures, group_size, kappa))
    assert pass_probability(successes, failures, group_size, kappa) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_pass_probability_matches_monte_carlo_for_fractional_counts():
    rng = random.Random(0)
    successes, failures, group_size, kappa = 2.5, 4.25, 12, 0.6
    passing = set(passing_counts(group_size, kappa))
    draws = 40_000
    hits = 0
    for _ in range(draws):
        q = rng.betavariate(successes, failures)
        hits += sum(rng.random() < q for _ in range(group_size)) in passing
    standard_error = math.sqrt(0.25 / draws)
    predicted = pass_probability(successes, failures, group_size, kappa)
    assert predicted == pytest.approx(hits / draws, abs=4 * standard_error)


@pytest.mark.parametrize("q", [0.03, 0.2, 0.5, 0.77, 0.99])
@pytest.mark.parametrize("group_size, kappa", [(16, 0.8), (8, 0.3), (5, 0.9)])
def test_pass_probability_with_huge_counts_is_the_binomial(q, group_size, kappa):
    binomial = math.fsum(
        math.comb(group_size, k) * q**k * (1 - q) ** (group_size - k) for k in passing_counts(group_size, kappa)
    )
    assert pass_probability(q * HUGE, (1 - q) * HUGE, group_size, kappa) == pytest.approx(binomial, abs=1e-9)


def test_pass_probability_reproduces_the_method_table():
    """The table "What kappa itself costs" of the method notes, to its two decimals."""
    table = {
        (8, 0.8): [0.04, 0.20, 0.44, 0.71, 0.44, 0.04],
        (16, 0.8): [0.02, 0.20, 0.55, 0.92, 0.55, 0.02],
        (8, 0.3): [0.57, 0.83, 0.94, 0.99, 0.94, 0.57],
    }
    for (group_size, kappa), row in table.items():
        for q, expected in zip([0.1, 0.2, 0.3, 0.5, 0.7, 0.9], row):
            assert pass_probability(q * HUGE, (1 - q) * HUGE, group_size, kappa) == pytest.approx(expected, abs=0.005)


def test_pass_probability_kappa_zero_is_one_and_errors():
    assert pass_probability(0.3, 7.0, 16, 0.0) == 1.0
    for successes, failures, name in [(0.0, 1.0, "successes"), (1.0, -2.0, "failures"), (math.inf, 1.0, "successes")]:
        with pytest.raises(ValueError, match=f"{name} must be a finite number > 0, got"):
            pass_probability(successes, failures, 8, 0.5)


def test_history_decayed_counts_and_prediction():
    history = PromptHistory(capacity=4, decay=0.5, prior=(1.0, 2.0))
    assert history.predict("a", 16, 0.8) is None and history.last_tried("a") is None and "a" not in history
    history.observe("a", 0.25, 16, step=3)  # 4 of 16
    record = history.records["a"]
    assert (record.successes, record.failures, record.last_tried, record.tries) == (4.0, 12.0, 3, 1)
    history.observe("a", 0.5, 8, step=7)
    assert (record.successes, record.failures) == (0.5 * 4 + 4, 0.5 * 12 + 4)
    assert (record.last_tried, record.tries) == (7, 2)
    assert history.last_tried("a") == 7 and "a" in history and len(history) == 1
    assert history.predict("a", 16, 0.8) == pass_probability(1.0 + 6.0, 2.0 + 10.0, 16, 0.8)
    history.observe("a", 0.5, 8, step=7)  # the same step again is allowed (several groups of one prompt in a step)
    assert history.records["a"].tries == 3


def test_history_decay_extremes():
    no_memory = PromptHistory(capacity=2, decay=0.0)
    no_memory.observe("a", 1.0, 16, 0)
    no_memory.observe("a", 0.5, 16, 1)
    assert (no_memory.records["a"].successes, no_memory.records["a"].failures) == (8.0, 8.0)
    full_memory = PromptHistory(capacity=2, decay=1.0)
    full_memory.observe("a", 1.0, 16, 0)
    full_memory.observe("a", 0.5, 16, 1)
    assert (full_memory.records["a"].successes, full_memory.records["a"].failures) == (24.0, 8.0)


def test_history_evicts_least_recently_tried():
    history = PromptHistory(capacity=3)
    for step, key in enumerate("abc"):
        history.observe(key, 0.5, 8, step)
    history.observe("a", 0.5, 8, 3)  # a is now the most recently tried
    history.predict("b", 8, 0.5)  # predicting is not trying: b stays the least recent
    history.observe("d", 0.5, 8, 4)
    assert list(history.records) == ["c", "a", "d"]
    history.observe("e", 0.5, 8, 5)
    assert list(history.records) == ["a", "d", "e"] and len(history) == 3


def test_history_state_round_trip_keeps_eviction_order():
    rng = random.Random(1)
    original = PromptHistory(capacity=5, decay=0.7)
    for step in range(40):
        original.observe(f"k{rng.randrange(8)}", rng.random(), rng.choice([4, 8]), step)
    restored = PromptHistory(capacity=5, decay=0.7)
    restored.load_state_dict(json.loads(json.dumps(original.state_dict())))
    assert restored.state_dict() == original.state_dict()
    for step in range(40, 80):
        key, mean = f"k{rng.randrange(12)}", rng.random()
        original.observe(key, mean, 8, step)
        restored.observe(key, mean, 8, step)
        assert list(restored.records) == list(original.records)
    assert restored.state_dict() == original.state_dict()
    assert all(restored.predict(k, 8, 0.5) == original.predict(k, 8, 0.5) for k in original.records)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"capacity": 0}, "capacity must be an integer >= 1, got 0"),
        ({"capacity": 2.5}, r"capacity must be an integer >= 1, got 2\.5"),
        ({"capacity": 4, "decay": 1.5}, r"decay must lie in \[0, 1\], got 1.5"),
        ({"capacity": 4, "prior": (0.0, 1.0)}, r"prior must be two finite numbers > 0, got \(0.0, 1.0\)"),
        ({"capacity": 4, "prior": (1.0,)}, "prior must be two finite numbers > 0"),
    ],
)
def test_history_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PromptHistory(**kwargs)


def test_history_observe_and_load_errors():
    history = PromptHistory(capacity=2)
    with pytest.raises(ValueError, match=r"mean_reward01 must lie in \[0, 1\], got 1.2"):
        history.observe("a", 1.2, 8, 0)
    with pytest.raises(ValueError, match=r"mean_reward01 must lie in \[0, 1\], got nan"):
        history.observe("a", math.nan, 8, 0)
    with pytest.raises(ValueError, match="group_size must be an integer >= 1, got 0"):
        history.observe("a", 0.5, 0, 0)
    history.observe("a", 0.5, 8, 5)
    with pytest.raises(ValueError, match="step 4 of prompt 'a' is before its last try at step 5"):
        history.observe("a", 0.5, 8, 4)
    for key in ("a", "unseen"):
        with pytest.raises(ValueError, match="group_size must be an integer >= 2, got 1"):
            history.predict(key, 1, 0.5)
    bigger = PromptHistory(capacity=3)
    for key in "xyz":
        bigger.observe(key, 0.5, 8, 0)
    with pytest.raises(ValueError, match="holds 3 prompts, more than its capacity 2"):
        history.load_state_dict(bigger.state_dict())


def test_nonbinary_groups_never_beat_the_binary_bound():
    """Bhatia-Davis, per group: rewards in [a, b] with normalised sum S have p at most the larger binary p of
    floor(S) and ceil(S) successes, and the bound is attained by binary groups."""
    rng = random.Random(0)
    for _ in range(3000):
        group_size = rng.randrange(2, 17)
        low, high = sorted(rng.uniform(-3, 3) for _ in range(2))
        # mostly near the ends, where p is large and the bound is tight
        rewards = [rng.choice([low, high, rng.uniform(low, high)]) for _ in range(group_size)]
        total = sum((r - low) / (high - low) for r in rewards)
        bound = max(normalized_variance(binary_group(k, group_size)) for k in {math.floor(total), math.ceil(total)})
        assert normalized_variance(rewards, (low, high)) <= bound + 1e-9
    for k in range(9):
        two_point = [2.0] * k + [-1.0] * (8 - k)
        assert normalized_variance(two_point, (-1.0, 2.0)) == normalized_variance(binary_group(k, 8))


def test_nonbinary_pass_probability_is_not_bounded_by_the_binary_model():
    """The documented limit of the binary model: rewards 0 or 0.7 with mean 0.3 pass kappa = 0.3 at G = 4 more often
    (0.86, exact enumeration) than rewards 0 or 1 with mean 0.3 (0.75)."""
    group_size, kappa, value = 4, 0.3, 0.7
    weight = 0.3 / value  # probability of the reward 0.7
    passing = 0.0
    for outcome in itertools.product([0, 1], repeat=group_size):
        rewards = [value * o for o in outcome]
        if normalized_variance(rewards) >= kappa:
            passing += weight ** sum(outcome) * (1 - weight) ** (group_size - sum(outcome))
    binary = pass_probability(0.3 * HUGE, 0.7 * HUGE, group_size, kappa)
    assert passing == pytest.approx(0.860, abs=0.001) and binary == pytest.approx(0.752, abs=0.001)


def seen_history(key="a", mean=0.0, group_size=16, step=0):
    history = PromptHistory(capacity=8)
    history.observe(key, mean, group_size, step)
    return history


def test_screen_never_skips_unseen_or_likely_passing_prompts_and_draws_nothing_for_them():
    screen = RolloutScreen(seed=0)
    state = screen.state_dict()
    history = seen_history("half", 0.5)  # 8 of 16: predicted 0.80 at kappa 0.8
    for step in range(50):
        assert screen.should_roll_out(history, "unseen", 16, 0.8, step)
        assert screen.should_roll_out(history, "half", 16, 0.8, step)
    assert screen.state_dict() == state  # no exploration draw was spent


def test_prediction_alone_never_explores_and_draws_nothing():
    """Refill rounds ask only `predicted_to_reach`: a prompt predicted to fail is refused however long ago it was tried
    and however high the exploration floor, and the exploration generator is untouched."""
    screen = RolloutScreen(explore_floor=1.0, seed=0)
    state = screen.state_dict()
    zero, half = seen_history("zero", 0.0), seen_history("half", 0.5)
    assert not screen.predicted_to_reach(zero, "zero", 16, 0.8)
    assert screen.should_roll_out(zero, "zero", 16, 0.8, step=10**6)  # the same prompt, explored by the full rule
    assert screen.predicted_to_reach(half, "half", 16, 0.8) and screen.predicted_to_reach(half, "unseen", 16, 0.8)
    screen.load_state_dict(state)
    for _ in range(20):
        screen.predicted_to_reach(zero, "zero", 16, 0.8)
    assert screen.state_dict() == state


def test_screen_draws_once_per_exploration_decision():
    history = seen_history("zero", 0.0)  # predicted 0.018 < skip_below
    screen, twin = RolloutScreen(seed=5), random.Random(5)
    for step in range(300):
        probability = min(1.0, 0.05 * 2 ** (step / 100))
        assert screen.should_roll_out(history, "zero", 16, 0.8, step) == (twin.random() < probability)


def test_screen_exploration_probability():
    screen = RolloutScreen(explore_floor=0.05, explore_doubling=100)
    assert screen.exploration_probability(0) == 0.05
    assert screen.exploration_probability(100) == pytest.approx(0.1)
    assert screen.exploration_probability(250) == pytest.approx(0.05 * 2**2.5)
    assert screen.exploration_probability(433) == 1.0  # log2(20) * 100 = 432.2
    assert screen.exploration_probability(10**9) == 1.0  # no overflow
    assert RolloutScreen(explore_floor=1.0).exploration_probability(0) == 1.0
    with pytest.raises(ValueError, match="steps since the last try must be >= 0, got -1"):
        screen.exploration_probability(-1)
    with pytest.raises(ValueError, match="steps since the last try must be >= 0, got -3"):
        screen.should_roll_out(seen_history("zero", 0.0, step=10), "zero", 16, 0.8, step=7)


@pytest.mark.parametrize("gap, expected", [(0, 0.05), (100, 0.10), (200, 0.20), (300, 0.40), (500, 1.0)])
def test_screen_explores_a_failing_prompt_with_the_stated_probability(gap, expected):
    """Over 4000 seeds, a prompt predicted to fail is rolled out with the stated probability, growing with the gap."""
    history = seen_history("one", 1.0 / 16)  # 1 of 16: predicted 0.074 < skip_below
    seeds = 4000
    rolled = sum(RolloutScreen(seed=seed).should_roll_out(history, "one", 16, 0.8, gap) for seed in range(seeds))
    tolerance = 4 * math.sqrt(expected * (1 - expected) / seeds) + 1e-12
    assert abs(rolled / seeds - expected) <= tolerance


def test_screen_is_deterministic_and_resumes_from_its_state():
    history = PromptHistory(capacity=16)
    for i in range(8):
        history.observe(f"k{i}", [0.0, 1.0, 0.5, 1 / 16][i % 4], 16, 0)

    def decisions(screen, steps):
        return [screen.should_roll_out(history, f"k{i}", 16, 0.8, step) for step in steps for i in range(8)]

    first, second = RolloutScreen(seed=3), RolloutScreen(seed=3)
    assert decisions(first, range(1, 40)) == decisions(second, range(1, 40))
    assert decisions(RolloutScreen(seed=3), range(1, 40)) != decisions(RolloutScreen(seed=4), range(1, 40))
    resumed = RolloutScreen(seed=99)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert decisions(resumed, range(40, 200)) == decisions(first, range(40, 200))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"skip_below": 1.2}, r"skip_below must lie in \[0, 1\], got 1.2"),
        ({"explore_floor": 0.0}, r"explore_floor must lie in \(0, 1\], got 0.0"),
        ({"explore_floor": 1.5}, r"explore_floor must lie in \(0, 1\], got 1.5"),
        ({"explore_doubling": 0}, "explore_doubling must be an integer >= 1, got 0"),
        ({"explore_doubling": 2.5}, r"explore_doubling must be an integer >= 1, got 2\.5"),
    ],
)
def test_rollout_screen_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RolloutScreen(**kwargs)


def test_simulated_epochs_skip_uninformative_prompts():
    """Prompts with pass rates 0, 1 and 0.5, G = 16, screened as the trainer screens (any variance), one group per
    prompt per epoch of 10 steps. After the first group the always-wrong and always-right prompts are predicted under
    skip_below and the q = 0.5 ones above it, so from the second epoch on they are rolled out only at about the
    exploration rate."""
    rng = random.Random(0)
    group_size, kappa, epoch_steps = 16, ANY_VARIANCE, 10
    pass_rates = {f"p{i}": [0.0, 1.0, 0.5][i % 3] for i in range(60)}
    history, screen = PromptHistory(capacity=100), RolloutScreen(seed=0)
    rolled = {0.0: 0, 1.0: 0, 0.5: 0}
    for epoch in range(6):
        step = epoch * epoch_steps
        for key, q in pass_rates.items():
            if not screen.should_roll_out(history, key, group_size, kappa, step):
                continue
            if epoch > 0:
                rolled[q] += 1
            successes = sum(rng.random() < q for _ in range(group_size))
            history.observe(key, successes / group_size, group_size, step)
            prediction = history.predict(key, group_size, kappa)
            assert (prediction < screen.skip_below) == (q != 0.5)
    assert rolled[0.5] == 5 * 20  # never skipped
    assert rolled[0.0] + rolled[1.0] <= 0.15 * 5 * 40  # exploration: 5% to 7%, a few groups out of 200


@pytest.mark.parametrize("group_size", [4, 8, 16, 32])
def test_defaults_skip_after_one_zero_variance_group_and_keep_a_prompt_the_policy_grows_into(group_size):
    """Defaults, screening at ANY_VARIANCE: one all-wrong (or all-right) group puts a prompt under skip_below; after
    any history of such groups, one group with variance brings it back above, so one exploratory re-try suffices."""
    skip_below = RolloutScreen().skip_below
    for extreme in (0.0, 1.0):
        history = PromptHistory(capacity=2)
        history.observe("a", extreme, group_size, 0)
        assert history.predict("a", group_size, ANY_VARIANCE) < skip_below
        for k in passing_counts(group_size, ANY_VARIANCE):
            history = PromptHistory(capacity=2)
            for step in range(30):  # saturates the counts at G / (1 - decay)
                history.observe("a", extreme, group_size, step)
            history.observe("a", k / group_size, group_size, 30)
            assert history.predict("a", group_size, ANY_VARIANCE) >= skip_below


def reference_refill(missing, rate, num_processes, max_per_process):
    """Smallest total n whose binomial tail P(passes >= missing) reaches 0.9, by a plain upward scan with math.comb."""

    def tail(n):
        return sum(math.comb(n, k) * rate**k * (1 - rate) ** (n - k) for k in range(missing, n + 1))

    for total in range(missing, num_processes * max_per_process + 1):
        if tail(total) >= 0.9:
            return min(max_per_process, max(1, math.ceil(total / num_processes)))
    return max_per_process


@pytest.mark.parametrize("rate", [0.05, 0.3, 0.5, 0.92, 1.0])
@pytest.mark.parametrize("missing", [1, 3, 8, 20])
@pytest.mark.parametrize("num_processes, max_per_process", [(1, 64), (4, 16), (3, 5)])
def test_refill_groups_matches_reference(rate, missing, num_processes, max_per_process):
    got = refill_groups(missing, [rate] * 7, num_processes, max_per_process)
    assert got == reference_refill(missing, rate, num_processes, max_per_process)


def test_refill_groups_limits_and_monotonicity():
    assert refill_groups(0, [0.1], 4, 8) == 0
    assert refill_groups(1, [1.0], 4, 8) == 1  # at least 1 when something is missing
    assert refill_groups(8, [1.0], 4, 8) == 2  # certain passes: exactly what is missing, spread evenly
    assert refill_groups(5, [0.0], 2, 6) == 6  # hopeless predictions: the cap
    assert refill_groups(100, [0.9], 2, 6) == 6  # more missing than the cap allows
    assert refill_groups(4, [None, None], 1, 64) == refill_groups(4, [0.5], 1, 64)
    assert refill_groups(4, [None, 0.9], 1, 64, unseen_pass_rate=0.1) == refill_groups(4, [0.5], 1, 64)
    assert refill_groups(4, [], 1, 64, unseen_pass_rate=0.2) == refill_groups(4, [0.2], 1, 64)
    previous = 0
    for missing in range(0, 40):
        groups = refill_groups(missing, [0.4, 0.6, None], 4, 12)
        assert previous <= groups <= 12
        previous = groups
    previous = 64
    for rate in [i / 20 for i in range(1, 21)]:
        groups = refill_groups(10, [rate], 1, 64)
        assert groups <= previous
        previous = groups


def test_refill_round_usually_suffices_with_calibrated_heterogeneous_predictions():
    """Prompts pass independently with their own predicted probabilities: a round sized by the mean fills what is
    missing at least 90% of the time (differing rates make passes less spread than one binomial)."""
    rng = random.Random(0)
    predicted = [0.95, 0.1, 0.6, 0.8, 0.3, 0.9, 0.5, 0.7]
    missing, num_processes = 10, 2
    per_process = refill_groups(missing, predicted, num_processes, 64)
    rounds, filled = 4000, 0
    for _ in range(rounds):
        prompts = [predicted[i % len(predicted)] for i in range(per_process * num_processes)]
        filled += sum(rng.random() < q for q in prompts) >= missing
    assert filled / rounds >= 0.9 - 4 * math.sqrt(0.09 / rounds)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((-1, [0.5], 1, 4), {}, "missing must be >= 0, got -1"),
        ((2.0, [0.5], 1, 4), {}, r"missing must be an integer, got 2\.0"),
        ((2, [0.5], 0, 4), {}, "num_processes must be >= 1, got 0"),
        ((2, [0.5], 1, 0), {}, "max_per_process must be >= 1, got 0"),
        ((2, [1.5], 1, 4), {}, r"predicted pass probability must lie in \[0, 1\], got 1.5"),
        ((2, [0.5], 1, 4), {"unseen_pass_rate": -0.5}, r"unseen_pass_rate must lie in \[0, 1\], got -0.5"),
    ],
)
def test_refill_groups_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        refill_groups(*args, **kwargs)


def test_prediction_tally_counts_matches_until_popped():
    tally = PredictionTally()
    assert tally.accuracy is None
    for predicted, passed in [(0.9, True), (0.5, False), (0.1, False), (0.2, True), (None, True)]:
        tally.record(predicted, passed)
    assert (tally.groups, tally.matched, tally.accuracy) == (4, 2, 0.5)  # the unseen prompt is not counted
    popped = tally.pop()
    assert (popped.groups, popped.matched, popped.accuracy) == (4, 2, 0.5)
    assert (tally.groups, tally.matched, tally.accuracy) == (0, 0, None)
    with pytest.raises(ValueError, match=r"predicted pass probability must lie in \[0, 1\], got 2.0"):
        tally.record(2.0, True)
