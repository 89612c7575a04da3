"""Unit tests of the TRL-free curriculum pieces: scores, schedule, replay bank, batch selection."""

import json
import math
import random
import statistics

import pytest

from trl_vcrl.curriculum import (
    BatchSelection,
    Candidate,
    KappaSchedule,
    ReplayBank,
    group_scores,
    normalized_variance,
    plan_refill,
)


def brute_force_p(rewards, low=0.0, high=1.0):
    n = len(rewards)
    max_var = max(statistics.variance([low] * k + [high] * (n - k)) for k in range(n + 1))
    return statistics.variance(rewards) / max_var


@pytest.mark.parametrize("n", range(2, 33))
def test_binary_p_matches_brute_force_for_every_k(n):
    for k in range(n + 1):
        rewards = [1.0] * k + [0.0] * (n - k)
        expected = brute_force_p(rewards)
        closed_form = 4 * k * (n - k) / (n * n if n % 2 == 0 else n * n - 1)
        assert normalized_variance(rewards) == pytest.approx(expected, abs=1e-12)
        assert normalized_variance(rewards) == closed_form  # exact: computed from integer counts
    assert normalized_variance([1.0] * n) == 0.0
    assert normalized_variance([0.0] * n) == 0.0


def test_normalized_variance_of_binary_groups_of_8_matches_the_paper():
    assert [normalized_variance([1.0] * k + [0.0] * (8 - k)) for k in range(9)] == [
        0,
        0.4375,
        0.75,
        0.9375,
        1,
        0.9375,
        0.75,
        0.4375,
        0,
    ]


def test_general_rewards_use_declared_range():
    rewards = [0.2, 0.5, 0.9, -1.0, 2.0]
    assert normalized_variance(rewards, (-1.0, 2.0)) == pytest.approx(brute_force_p(rewards, -1.0, 2.0))
    # scaling rewards and range together leaves p unchanged
    assert normalized_variance([0.1, 0.4, 0.3, 0.9], (0, 1)) == pytest.approx(
        normalized_variance([1, 4, 3, 9], (0, 10))
    )
    # binary rewards on a non-unit range still count exactly
    assert normalized_variance([-1.0, 2.0, 2.0, -1.0], (-1.0, 2.0)) == 1.0
    # constant non-binary group is exactly 0
    assert normalized_variance([0.3] * 7) == 0.0


def test_nan_rewards_are_excluded():
    nan = float("nan")
    assert normalized_variance([1.0, 0.0, nan, nan]) == normalized_variance([1.0, 0.0])
    assert normalized_variance([1.0, nan, nan]) == 0.0  # fewer than two valid rewards
    assert normalized_variance([nan] * 4) == 0.0


def test_group_scores_splits_consecutive_groups():
    assert group_scores([1, 0, 1, 1, 0, 0, 0, 0], 4) == [0.75, 0.0]
    with pytest.raises(ValueError, match="groups of 4"):
        group_scores([1, 0, 1], 4)


def test_kappa_schedule_from_warmup_or_pieces_is_piecewise_constant():
    schedule = KappaSchedule.from_warmup(kappa=0.8, kappa_warmup=0.3, kappa_warmup_steps=20)
    assert [schedule(s) for s in (0, 19, 20, 500)] == [0.3, 0.3, 0.8, 0.8]
    assert KappaSchedule.from_warmup(0.8, 0.3, 0)(0) == 0.8
    parsed = KappaSchedule.parse(["0:0.3", "20:0.5", "100:0.8"])
    assert [parsed(s) for s in (0, 50, 100)] == [0.3, 0.5, 0.8]


@pytest.mark.parametrize(
    "pieces, match",
    [
        (["0:0.3", "20:1.5"], r"kappa must lie in \[0, 1\], got 1.5 at step 20"),
        (["0:0.3", "30:0.5", "20:0.8"], r"strictly increasing, got \[0, 30, 20\]"),
        (["5:0.3"], "must start at step 0, got first step 5"),
        (["0-0.3"], "'0-0.3' is not of the form 'step:kappa'"),
        ([], "empty"),
    ],
)
def test_kappa_schedule_errors(pieces, match):
    with pytest.raises(ValueError, match=match):
        KappaSchedule.parse(pieces)


def row(i):
    return {"prompt": f"q{i}", "answer": str(i)}


def test_bank_priority_order_and_momentum():
    bank = ReplayBank(capacity=10, momentum=0.9, replay_limit=5, seed=0)
    for i, p in enumerate([0.5, 0.9, 0.7]):
        bank.add(f"k{i}", row(i), p)
    assert [k for k, _ in bank.take(3)] == ["k1", "k2", "k0"]
    bank.update("k0", 1.0)  # 0.9*0.5 + 0.1*1.0
    assert bank.entries["k0"].priority == pytest.approx(0.55)
    bank.add("k0", row(0), 0.0)  # re-adding a held prompt is a momentum update, not a duplicate
    assert len(bank) == 3 and bank.entries["k0"].priority == pytest.approx(0.495)
    bank.update("missing", 1.0)  # unknown keys are ignored
    assert "missing" not in bank


def test_bank_replay_limit_and_exclude():
    bank = ReplayBank(capacity=10, replay_limit=2, seed=0)
    bank.add("a", row(0), 0.9)
    bank.add("b", row(1), 0.8)
    assert bank.take(1, exclude={"a"}) == [("b", row(1))]
    assert bank.available(exclude={"a"}) == 1
    assert [k for k, _ in bank.take(2)] == ["a", "b"]  # b reaches its limit and leaves
    assert list(bank.entries) == ["a"] and bank.entries["a"].replays == 1
    bank.take(1)
    assert len(bank) == 0
    bank.add("a", row(0), 0.9)  # re-enters fresh after passing again
    assert bank.entries["a"].replays == 0


def test_bank_evicts_lowest_priority():
    bank = ReplayBank(capacity=2, seed=0)
    bank.add("a", row(0), 0.5)
    bank.add("b", row(1), 0.9)
    bank.add("c", row(2), 0.7)
    assert set(bank.entries) == {"b", "c"}
    bank.add("d", row(3), 0.1)  # lower than everything held: it is the one evicted
    assert set(bank.entries) == {"b", "c"}
    assert len(ReplayBank(capacity=0).entries) == 0


def test_bank_determinism_and_state_round_trip():
    def run(bank):
        for i in range(20):
            bank.add(f"k{i}", row(i), [0.5, 1.0][i % 2])
        return [k for k, _ in bank.take(5)]

    first, second = ReplayBank(capacity=8, seed=3), ReplayBank(capacity=8, seed=3)
    assert run(first) == run(second)
    assert run(ReplayBank(capacity=8, seed=3)) != run(ReplayBank(capacity=8, seed=4))  # ties broken by the seed
    restored = ReplayBank(capacity=8, seed=99)
    restored.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert restored.state_dict() == first.state_dict()
    first.add("new", row(100), 0.5)
    restored.add("new", row(100), 0.5)  # same generator state: same tie-break draw
    assert restored.state_dict() == first.state_dict()


class LinearScanBank:
    """Reference model of ReplayBank's rules: the obvious linear scans over a dict, ordered by (priority, tiebreak, key)."""

    def __init__(self, capacity, momentum, replay_limit, tiebreaks):
        self.capacity, self.momentum, self.replay_limit, self.tiebreaks = capacity, momentum, replay_limit, tiebreaks
        self.entries = {}  # key -> [priority, replays, tiebreak]

    def add(self, key, p):
        if key in self.entries:
            return self.update(key, p)
        self.entries[key] = [p, 0, self.tiebreaks(key)]
        if len(self.entries) > self.capacity:
            del self.entries[min(self.entries, key=lambda k: (self.entries[k][0], self.entries[k][2], k))]

    def update(self, key, p):
        if key in self.entries:
            self.entries[key][0] = self.momentum * self.entries[key][0] + (1 - self.momentum) * p

    def take(self, n, exclude):
        order = sorted(
            (k for k in self.entries if k not in exclude), key=lambda k: (-self.entries[k][0], -self.entries[k][2], k)
        )
        for key in order[:n]:
            self.entries[key][1] += 1
            if self.entries[key][1] >= self.replay_limit:
                del self.entries[key]
        return order[:n]


@pytest.mark.parametrize("seed", range(6))
def test_bank_heaps_match_linear_scan_reference(seed):
    """2000 random add/update/take calls (few distinct priorities, so ties are common; a state round trip halfway):
    the heap-based bank takes and evicts exactly what the linear-scan rules say, and its heaps stay bounded."""
    rng = random.Random(seed)
    bank = ReplayBank(
        capacity=rng.choice([1, 5, 40]),
        momentum=rng.choice([0.0, 0.5, 0.9]),
        replay_limit=rng.choice([1, 2, 3]),
        seed=seed,
    )
    reference = LinearScanBank(bank.capacity, bank.momentum, bank.replay_limit, lambda key: bank.entries[key].tiebreak)
    priorities = [0.0, 0.25, 0.5, 1.0]
    for step in range(2000):
        if step == 1000:
            restored = ReplayBank(capacity=bank.capacity, momentum=bank.momentum, replay_limit=bank.replay_limit)
            restored.load_state_dict(json.loads(json.dumps(bank.state_dict())))
            bank = restored
        key = f"k{rng.randrange(80)}"
        action = rng.random()
        if action < 0.5:
            p = rng.choice(priorities)
            held_before = key in bank
            bank.add(key, row(0), p)
            if held_before or key in bank:  # the reference reads the tie-break the bank drew
                reference.add(key, p)
            else:  # the new entry was itself the lowest and was evicted at once
                assert key not in reference.entries and len(reference.entries) == bank.capacity
                assert min((e[0], e[2]) for e in reference.entries.values()) >= (p, 0.0)
        elif action < 0.8:
            p = rng.choice(priorities)
            bank.update(key, p)
            reference.update(key, p)
        else:
            exclude = {f"k{rng.randrange(80)}" for _ in range(rng.randrange(4))}
            n = rng.randrange(6)
            assert bank.available(exclude) == sum(k not in exclude for k in reference.entries)
            assert [k for k, _ in bank.take(n, exclude)] == reference.take(n, exclude)
        assert {k: [e.priority, e.replays, e.tiebreak] for k, e in bank.entries.items()} == reference.entries
        assert len(bank._lowest) + len(bank._highest) <= 4 * len(bank) + 64


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(capacity=-1), "capacity must be >= 0, got -1"),
        (dict(capacity=4, momentum=1.5), r"momentum must lie in \[0, 1\], got 1.5"),
        (dict(capacity=4, replay_limit=0), "replay limit must be >= 1, got 0"),
    ],
)
def test_replay_bank_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReplayBank(**kwargs)


def cand(process, index, p, round=0, source="fresh"):
    return Candidate(process=process, round=round, index=index, p=p, source=source, key=f"{round}-{process}-{index}")


def test_batch_selection_keeps_passing_then_refills_then_falls_back():
    selection = BatchSelection(num_processes=2, groups_per_process=2, kappa=0.5)
    selection.offer([cand(0, 0, 0.9), cand(0, 1, 0.1), cand(1, 0, 0.2), cand(1, 1, 0.3)])
    assert selection.missing() == [1, 2]
    per_process, plan = plan_refill(selection.missing(), bank_rows=2)
    assert (per_process, plan) == (2, [1, 1])
    selection.offer([cand(0, 0, 0.8, 1, "bank"), cand(0, 1, 0.7, 1), cand(1, 0, 0.6, 1, "bank"), cand(1, 1, 0.0, 1)])
    assert selection.missing() == [0, 1]
    assert [c.p for c in selection.surplus] == [0.7]  # passed, but process 0 was full: goes to the bank
    selection.finish()
    assert [c.p for c in selection.fallback] == [0.3]  # the best dropped group of process 1
    assert [[c.p for c in chosen] for chosen in selection.chosen] == [[0.9, 0.8], [0.6, 0.3]]


def test_plan_refill_gives_bank_rows_in_process_order():
    assert plan_refill([3, 0, 2], bank_rows=4) == (3, [3, 0, 1])
    assert plan_refill([1, 1], bank_rows=0) == (1, [0, 0])
    assert math.isclose(normalized_variance([1.0, 0.0]), 1.0)
