"""Rollout economy without TRL: predict, before rolling a prompt out, whether its group will pass `kappa`.

VCRL trains only on groups whose normalised variance `p` reaches `kappa`; every group that misses is a rollout paid
for nothing. A prompt's own history predicts its next group well (GRESO, arXiv 2506.02177: prompts whose groups had
zero variance tend to keep zero variance over the next epochs), so this module keeps a decayed Beta posterior of each
prompt's pass rate (as MoPPS, arXiv 2507.04632, does) and turns it into the probability that a fresh group passes
`kappa`. The trainer uses it to skip prompts predicted to fail (`RolloutScreen`), to size refill rounds
(`refill_groups`) and to report how good the predictions were (`PredictionTally`).

Everything here is plain Python and deterministic, like `trl_vcrl.curriculum`.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# The screen's target threshold: any reward variance. Every positive binary p (the smallest is 4(G-1)/G^2) reaches
# it, so passing_counts(G, ANY_VARIANCE) is 1..G-1.
ANY_VARIANCE = 1e-12

# Probability that one refill round yields every missing group, when the predictions are calibrated. A step then
# needs on average at most 1/0.9 = 1.11 refill rounds once it needs one.
_REFILL_ROUND_SUCCESS = 0.9


def _check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must lie in [0, 1], got {value}.")


def passing_counts(group_size: int, kappa: float) -> range:
    """Success counts `k` of a binary group of `group_size` rewards whose normalised variance reaches `kappa`.

    With binary rewards `p(k) = 4k(G-k)/G²` (even `G`) or `4k(G-k)/(G²-1)` (odd `G`), computed exactly as
    `trl_vcrl.curriculum.normalized_variance` does, so both agree on every count. `p` rises up to `k = G/2` and is
    symmetric, so the passing counts are one band `k_low..G-k_low`; its peak is 1, so the band is never empty.

    Args:
        group_size (`int`):
            Rewards per group `G`, at least 2.
        kappa (`float`):
            Threshold in `[0, 1]`; `0` lets every count pass, `k = 0` and `k = G` included.

    Returns:
        `range`: The passing counts, in increasing order.
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
        raise ValueError(f"group_size must be an integer >= 2, got {group_size!r}.")
    _check_unit_interval("kappa", kappa)
    n = group_size
    denominator = n * n if n % 2 == 0 else n * n - 1
    low = next(k for k in range(n // 2 + 1) if 4 * k * (n - k) / denominator >= kappa)
    return range(low, n - low + 1)


def pass_probability(successes: float, failures: float, group_size: int, kappa: float) -> float:
    """Probability that a fresh group of `group_size` binary rewards passes `kappa` when its pass rate is uncertain.

    The pass rate `q` follows `Beta(successes, failures)`, so the success count follows the beta-binomial
    `P(k) = C(G, k) B(k + successes, G - k + failures) / B(successes, failures)`, summed over `passing_counts`.
    `C(G, k)` comes from `math.lgamma`; the ratio of Beta functions is summed as logs of rising factorials, because
    `lgamma(successes + k) - lgamma(successes)` cancels catastrophically once the counts are large. With huge counts
    the result tends to the plain binomial probability at `q = successes / (successes + failures)`.

    Args:
        successes (`float`):
            First Beta parameter, > 0 (pseudo-counts of successes).
        failures (`float`):
            Second Beta parameter, > 0 (pseudo-counts of failures).
        group_size (`int`):
            Rewards per group `G`, at least 2.
        kappa (`float`):
            Threshold in `[0, 1]`.

    Returns:
        `float`: The probability, in `[0, 1]`.
    """
    for name, value in (("successes", successes), ("failures", failures)):
        if not 0.0 < value < math.inf:
            raise ValueError(f"{name} must be a finite number > 0, got {value}.")
    counts = passing_counts(group_size, kappa)
    n = group_size
    rising_successes, rising_failures = _log_rising(successes, n), _log_rising(failures, n)
    log_norm = _log_rising(successes + failures, n)[n]
    log_n_factorial = math.lgamma(n + 1)
    total = math.fsum(
        math.exp(
            log_n_factorial
            - math.lgamma(k + 1)
            - math.lgamma(n - k + 1)
            + rising_successes[k]
            + rising_failures[n - k]
            - log_norm
        )
        for k in counts
    )
    return min(total, 1.0)  # min() only absorbs float rounding above 1


def _log_rising(x: float, n: int) -> list[float]:
    """`log(x (x+1) ... (x+j-1))`, the log of `Gamma(x + j) / Gamma(x)`, for `j = 0..n`."""
    logs = [0.0]
    for j in range(n):
        logs.append(logs[-1] + math.log(x + j))
    return logs


@dataclass
class PromptRecord:
    """What a `PromptHistory` knows of one prompt: decayed counts of successes and failures, and when it was tried."""

    successes: float
    failures: float
    last_tried: int
    tries: int


@dataclass
class PromptHistory:
    """Decayed Beta posterior of each prompt's pass rate, for the prompts generated in the run.

    Each generated group of `G` rewards with normalised mean `m` (rewards mapped from `[a, b]` to `[0, 1]`) updates
    the prompt's counts as `s <- decay * s + G * m` and `f <- decay * f + G * (1 - m)`. The decay discounts the
    prompt's earlier groups because the policy moves: a fresh group weighs 1, the one before `decay`, and so on, so the
    counts never exceed `G / (1 - decay)` however often the prompt was tried. The prediction is `pass_probability`
    under `Beta(prior + counts)`.

    With the default `decay = 0.5` the newest group outweighs all earlier ones together (`1 > 0.5 + 0.25 + ...`):
    a prompt that the policy grows into leaves the skipped range after one re-try (seen all wrong many times, then
    with 8 of 16 right, it is predicted to pass `kappa = 0.8` with probability 0.42), while two or three concordant
    groups still sharpen the prediction (16 of 16 wrong gives 0.0065 after one group, 0.0019 after two).

    The default prior is Jeffreys' `Beta(0.5, 0.5)`, the standard non-informative prior of a binomial rate. It puts
    more mass near 0 and 1 than the uniform prior, in line with what GRESO observed: most prompts sit at the
    extremes, and a zero-variance group predicts more of them. So one all-wrong group is evidence enough to skip at
    the settings VCRL uses (`G = 8, kappa = 0.5`: 0.103; `G = 16, kappa = 0.3`: 0.110), where the uniform prior
    would still predict 0.21 and 0.23.

    Non-binary rewards: the prediction uses the binary model on the normalised mean, that is, it predicts what the
    prompt would do if every reward were at one end of its range. That is the widest spread a mean allows: by the
    Bhatia-Davis inequality, values in `[a, b]` with mean `m` have variance at most `(m - a)(b - m)`, attained only
    by two-point `a`/`b` rewards. Per group, with normalised reward sum `S = G * m`, `p` is at most the larger binary
    `p` of `floor(S)` and `ceil(S)` successes (the variance is convex in the one reward that is not at an end), so a
    group fails a fortiori when neither count is in `passing_counts`. This bound holds group by group; it does not
    make the predicted probability an upper bound in general: partial credit can make the all-wrong group rarer than
    Bernoulli rewards of the same mean do (rewards 0 or 0.7 with mean 0.3 pass `kappa = 0.3` at `G = 4` with
    probability 0.86, against 0.75 for rewards 0 or 1 with mean 0.3). With non-binary rewards the prediction is
    therefore a model, not a bound, and the exploration floor of `RolloutScreen` bounds what a wrong skip costs.

    Memory is bounded: when `capacity` prompts are held, observing a new one forgets the least recently tried. The
    order is kept in `state_dict`, so a restored history evicts exactly as the original.

    Args:
        capacity (`int`):
            Maximum number of prompts remembered, at least 1.
        decay (`float`, *optional*, defaults to `0.5`):
            Weight of a prompt's earlier evidence at each new group of that prompt, in `[0, 1]`.
        prior (`tuple[float, float]`, *optional*, defaults to `(0.5, 0.5)`):
            Beta prior `(successes, failures)` of a prompt's pass rate, both > 0. The default is Jeffreys' prior.
    """

    capacity: int
    decay: float = 0.5
    prior: tuple[float, float] = (0.5, 0.5)
    records: OrderedDict[str, PromptRecord] = field(default_factory=OrderedDict, init=False)

    def __post_init__(self):
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int) or self.capacity < 1:
            raise ValueError(f"prompt history capacity must be an integer >= 1, got {self.capacity!r}.")
        _check_unit_interval("prompt history decay", self.decay)
        if len(self.prior) != 2 or not all(0.0 < value < math.inf for value in self.prior):
            raise ValueError(f"prompt history prior must be two finite numbers > 0, got {self.prior!r}.")
        self.prior = (float(self.prior[0]), float(self.prior[1]))

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def observe(self, key: str, mean_reward01: float, group_size: int, step: int) -> None:
        """Record one generated group of the prompt `key`.

        Args:
            key (`str`):
                Stable prompt key (`trl_vcrl.curriculum.prompt_key`).
            mean_reward01 (`float`):
                The group's mean reward mapped to `[0, 1]`: `(mean - a) / (b - a)` for rewards in `[a, b]`.
            group_size (`int`):
                Number of rewards the mean was taken over, at least 1.
            step (`int`):
                Training step of the group; not before the prompt's last try.
        """
        _check_unit_interval("mean_reward01", mean_reward01)
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be an integer >= 1, got {group_size!r}.")
        record = self.records.get(key)
        if record is None:
            if len(self.records) == self.capacity:
                self.records.popitem(last=False)  # the least recently tried prompt
            self.records[key] = PromptRecord(group_size * mean_reward01, group_size * (1.0 - mean_reward01), step, 1)
            return
        if step < record.last_tried:
            raise ValueError(f"step {step} of prompt {key!r} is before its last try at step {record.last_tried}.")
        record.successes = self.decay * record.successes + group_size * mean_reward01
        record.failures = self.decay * record.failures + group_size * (1.0 - mean_reward01)
        record.last_tried = step
        record.tries += 1
        self.records.move_to_end(key)

    def predict(self, key: str, group_size: int, kappa: float) -> float | None:
        """Probability that a fresh group of `group_size` rewards of `key` passes `kappa`; `None` for an unseen key."""
        record = self.records.get(key)
        if record is None:
            passing_counts(group_size, kappa)  # the same argument errors for seen and unseen prompts
            return None
        return pass_probability(self.prior[0] + record.successes, self.prior[1] + record.failures, group_size, kappa)

    def last_tried(self, key: str) -> int | None:
        """Step of the prompt's latest group, `None` if unseen."""
        record = self.records.get(key)
        return None if record is None else record.last_tried

    def state_dict(self) -> dict[str, Any]:
        return {"records": [[key, r.successes, r.failures, r.last_tried, r.tries] for key, r in self.records.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        records = state["records"]
        if len(records) > self.capacity:
            raise ValueError(
                f"prompt history state holds {len(records)} prompts, more than its capacity {self.capacity}."
            )
        self.records = OrderedDict((key, PromptRecord(*values)) for key, *values in records)


@dataclass
class RolloutScreen:
    """Decides, before rolling out, whether a prompt seen before is worth a group.

    The rule, for a prompt `key` at training step `step` and a target threshold `kappa`:

    - never seen (no prediction): roll out, so every prompt is tried at least once;
    - predicted to reach `kappa` with probability `>= skip_below`: roll out;
    - otherwise roll out with probability `min(1, explore_floor * 2 ** ((step - last_tried) / explore_doubling))`,
      one draw of the screen's own generator (and no draw in the two cases above), so every process fed the same
      calls takes the same decisions.

    The trainer screens a step's first generation call at `kappa = ANY_VARIANCE`: it skips prompts predicted to give a
    zero-variance group, as GRESO (arXiv 2506.02177) does, whose main observation is that such prompts tend to keep
    zero variance over the next epochs; a probabilistic exploration brings skipped prompts back so that prompts the
    policy grows into are not lost. Only the first call explores: its size is fixed, so exploring costs no extra
    rollouts. Refill rounds exist to pass the training `kappa` and ask `predicted_to_reach` at that `kappa`, without
    exploring. Screening the first call at the training `kappa` as well would also skip prompts the policy solves
    once or twice in a group: they rarely pass a high `kappa` but carry the signal the policy learns from next
    (measured in docs/benchmarks/rollout_economy.md, where that stricter screen learned less per rollout than the
    paper). The prediction itself is the Beta posterior of the prompt's pass rate (`PromptHistory`, as in MoPPS,
    arXiv 2507.04632).

    Defaults and why:

    - `skip_below = 0.3`: with `PromptHistory`'s defaults one all-wrong (or all-right) group predicts a group with
      variance at 0.28-0.29 for any `G` from 4 to 32, so the prompt is skipped after one zero-variance group; one
      group with a single success (or failure) after any history of zero-variance groups predicts 0.46, so a prompt
      the policy starts to solve is kept. `0` turns skipping off.
    - `explore_floor = 0.05`: a prompt just skipped still costs at most 5% of the rollouts it would have cost
      unscreened, so the screen keeps at least 95% of what it saves.
    - `explore_doubling = 100`: pass rates drift with optimizer updates, so the exploration grows with the steps
      since the prompt was last tried, doubling every 100 steps: a prompt that comes up `log2(1 / 0.05) * 100 = 433`
      or more steps after its last try is rolled out for sure.

    Args:
        skip_below (`float`, *optional*, defaults to `0.3`):
            Predicted probability of reaching the target under which a seen prompt is skipped (unless explored), in
            `[0, 1]`.
        explore_floor (`float`, *optional*, defaults to `0.05`):
            Probability that a prompt predicted to fail is rolled out anyway, right after its last try, in `(0, 1]`.
        explore_doubling (`int`, *optional*, defaults to `100`):
            Steps since the prompt's last try after which its exploration probability doubles, at least 1.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the exploration generator.
    """

    skip_below: float = 0.3
    explore_floor: float = 0.05
    explore_doubling: int = 100
    seed: int = 0

    def __post_init__(self):
        _check_unit_interval("skip_below", self.skip_below)
        if not 0.0 < self.explore_floor <= 1.0:
            raise ValueError(f"explore_floor must lie in (0, 1], got {self.explore_floor}.")
        if (
            isinstance(self.explore_doubling, bool)
            or not isinstance(self.explore_doubling, int)
            or self.explore_doubling < 1
        ):
            raise ValueError(f"explore_doubling must be an integer >= 1, got {self.explore_doubling!r}.")
        self._rng = random.Random(self.seed)

    def exploration_probability(self, steps_since_tried: int) -> float:
        """`min(1, explore_floor * 2 ** (steps_since_tried / explore_doubling))`."""
        if steps_since_tried < 0:
            raise ValueError(f"steps since the last try must be >= 0, got {steps_since_tried}.")
        doublings = steps_since_tried / self.explore_doubling
        if doublings >= -math.log2(self.explore_floor):  # also keeps 2 ** doublings from overflowing
            return 1.0
        return min(1.0, self.explore_floor * 2.0**doublings)

    def predicted_to_reach(self, history: PromptHistory, key: str, group_size: int, kappa: float) -> bool:
        """Whether `key` is unseen or predicted to reach `kappa` with probability `>= skip_below` (no draw)."""
        predicted = history.predict(key, group_size, kappa)
        return predicted is None or predicted >= self.skip_below

    def should_roll_out(self, history: PromptHistory, key: str, group_size: int, kappa: float, step: int) -> bool:
        """Whether to generate a group of `key` at `step` (see the class docstring for the rule)."""
        if self.predicted_to_reach(history, key, group_size, kappa):
            return True
        return self._rng.random() < self.exploration_probability(step - history.last_tried(key))

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self._rng.getstate()
        return {"rng_state": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        version, internal, gauss = state["rng_state"]
        self._rng.setstate((version, tuple(internal), gauss))


def refill_groups(
    missing: int,
    predicted: Sequence[float | None],
    num_processes: int,
    max_per_process: int,
    unseen_pass_rate: float = 0.5,
) -> int:
    """Groups each process generates in one refill round, so that the round most likely fills `missing` slots.

    A generated group passes with the mean predicted probability `r` of the prompts the round draws (`None`, an
    unseen prompt, counts as `unseen_pass_rate`). The round generates the smallest total `n` with
    `P(Binomial(n, r) >= missing) >= 0.9`, so one round usually suffices and a step that needs a refill needs on
    average at most 1/0.9 = 1.11 rounds when the predictions are calibrated; the surplus goes to the bank. Treating
    the prompts as one pass rate `r` errs on the side of more groups: for the same mean, differing pass rates make the
    number of passes less spread (Hoeffding, 1956). The total is spread evenly, `ceil(n / num_processes)` per
    process, at least 1 and at most `max_per_process` (also when even that many is unlikely to be enough, e.g.
    `r = 0`).

    Args:
        missing (`int`):
            Slots still missing, summed over processes, >= 0. `0` gives `0`.
        predicted (`Sequence[float | None]`):
            Predicted pass probabilities of the prompts the round would draw, in `[0, 1]`, `None` for unseen prompts.
            Empty counts as unseen prompts.
        num_processes (`int`):
            Number of processes, at least 1.
        max_per_process (`int`):
            Most groups a process may generate in one round, at least 1.
        unseen_pass_rate (`float`, *optional*, defaults to `0.5`):
            Pass probability assumed for an unseen prompt, in `[0, 1]`; the run's observed pass fraction of first
            groups is a good value.

    Returns:
        `int`: Groups per process this round.
    """
    for name, value in (("missing", missing), ("num_processes", num_processes), ("max_per_process", max_per_process)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}.")
    if missing < 0:
        raise ValueError(f"missing must be >= 0, got {missing}.")
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}.")
    if max_per_process < 1:
        raise ValueError(f"max_per_process must be >= 1, got {max_per_process}.")
    _check_unit_interval("unseen_pass_rate", unseen_pass_rate)
    for value in predicted:
        if value is not None:
            _check_unit_interval("predicted pass probability", value)
    if missing == 0:
        return 0
    rates = [unseen_pass_rate if value is None else value for value in predicted] or [unseen_pass_rate]
    rate = sum(rates) / len(rates)
    most = num_processes * max_per_process
    if missing > most or _binomial_at_least(most, rate, missing) < _REFILL_ROUND_SUCCESS:
        return max_per_process
    low, high = missing, most  # the tail grows with n: bisect for the smallest n that reaches the target
    while low < high:
        middle = (low + high) // 2
        if _binomial_at_least(middle, rate, missing) >= _REFILL_ROUND_SUCCESS:
            high = middle
        else:
            low = middle + 1
    return min(max_per_process, max(1, -(-low // num_processes)))


def _binomial_at_least(n: int, rate: float, m: int) -> float:
    """`P(Binomial(n, rate) >= m)`."""
    if rate >= 1.0:
        return 1.0 if n >= m else 0.0
    if rate <= 0.0:
        return 1.0 if m <= 0 else 0.0
    log_rate, log_rest = math.log(rate), math.log1p(-rate)
    below = math.fsum(
        math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_rate + (n - k) * log_rest)
        for k in range(min(m, n + 1))
    )
    return max(0.0, 1.0 - below)


@dataclass
class PredictionTally:
    """How often the pre-rollout prediction was right, for the prediction-quality metric.

    `record` each generated group whose prompt had a prediction; a prediction counts as right when
    `(predicted >= 0.5) == passed`. `pop()` returns the counts so far and starts a new tally (once per step).
    """

    groups: int = 0
    matched: int = 0

    def record(self, predicted: float | None, passed: bool) -> None:
        """Count one generated group; groups of unseen prompts (`predicted is None`) are not counted."""
        if predicted is None:
            return
        _check_unit_interval("predicted pass probability", predicted)
        self.groups += 1
        self.matched += (predicted >= 0.5) == passed

    @property
    def accuracy(self) -> float | None:
        """Fraction of counted groups whose prediction was right, `None` when none was counted."""
        return self.matched / self.groups if self.groups else None

    def pop(self) -> PredictionTally:
        """The tally so far; this one starts again from zero."""
        tally = PredictionTally(self.groups, self.matched)
        self.groups = self.matched = 0
        return tally
