"""The VCRL curriculum without TRL: group scores, the threshold schedule, the replay bank and batch selection.

Everything here is plain Python so it can be read in one sitting and unit-tested on its own. The trainer
(`trl_vcrl.trainer`) only moves tensors around according to the decisions taken here.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any


def range_tolerance(reward_range: tuple[float, float]) -> float:
    """How far a reward may lie from a range end and still count as that end: float rounding, not real excess.

    Ten float32 rewards weighted 0.1 each sum to 1.0000001, and a range end such as 0.1 has no exact float32 value;
    both must count as the end. Scaled to the magnitudes involved (float32 keeps about 7 significant digits).
    """
    low, high = reward_range
    return 1e-5 * max(abs(low), abs(high), high - low)


def normalized_variance(rewards: Sequence[float], reward_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """Normalised group reward variance `p` of VCRL (paper §3.1), in `[0, 1]`.

    `p` is the unbiased (ddof=1) variance of the group's rewards divided by the largest variance `n` rewards in
    `reward_range` can have: `(b-a)² n / (4(n-1))` for even `n`, `(b-a)² (n+1) / (4n)` for odd `n`. NaN rewards
    (a reward function returned `None`) are left out; fewer than two valid rewards give `p = 0`.

    When every reward is one of the two range ends, within `range_tolerance` (binary rewards), `p` is computed from
    the integer count `k` of high rewards: `4k(n-k)/n²` (even `n`) or `4k(n-k)/(n²-1)` (odd `n`). Counting avoids
    float noise, so a constant group is exactly `0` and a binary group lands exactly on its closed form.

    Args:
        rewards (`Sequence[float]`):
            The rewards of one group (one prompt, `G` completions).
        reward_range (`tuple[float, float]`, *optional*, defaults to `(0.0, 1.0)`):
            Bounds `[a, b]` every reward lies in. Checking that rewards respect them is the caller's job.

    Returns:
        `float`: The normalised variance `p`.
    """
    low, high = reward_range
    valid = [r for r in rewards if not math.isnan(r)]
    n = len(valid)
    if n < 2:
        return 0.0
    tolerance = range_tolerance(reward_range)
    is_high = [abs(r - high) <= tolerance for r in valid]
    if all(h or abs(r - low) <= tolerance for r, h in zip(valid, is_high)):
        k = sum(is_high)
        return 4 * k * (n - k) / (n * n if n % 2 == 0 else n * n - 1)
    mean = sum(valid) / n
    variance = sum((r - mean) ** 2 for r in valid) / (n - 1)
    width_sq = (high - low) ** 2
    max_variance = width_sq * n / (4 * (n - 1)) if n % 2 == 0 else width_sq * (n + 1) / (4 * n)
    return min(variance / max_variance, 1.0)  # min() only absorbs float rounding above 1


def group_scores(
    rewards: Sequence[float], group_size: int, reward_range: tuple[float, float] = (0.0, 1.0)
) -> list[float]:
    """`normalized_variance` of each run of `group_size` consecutive rewards."""
    if len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {group_size}.")
    return [normalized_variance(rewards[i : i + group_size], reward_range) for i in range(0, len(rewards), group_size)]


@dataclass(frozen=True)
class KappaSchedule:
    """Piecewise-constant threshold `kappa(step)`: a list of `(first_step, kappa)` pieces.

    The paper (§4.1) uses `[(0, 0.3), (20, 0.8)]`: a low threshold while the bank warms up, then a high one.
    """

    pieces: tuple[tuple[int, float], ...]

    def __post_init__(self):
        if not self.pieces:
            raise ValueError("kappa schedule is empty; give at least one (step, kappa) piece.")
        steps = [step for step, _ in self.pieces]
        if steps[0] != 0:
            raise ValueError(f"kappa schedule must start at step 0, got first step {steps[0]}.")
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"kappa schedule steps must be strictly increasing, got {steps}.")
        for step, kappa in self.pieces:
            if not 0.0 <= kappa <= 1.0:
                raise ValueError(f"kappa must lie in [0, 1], got {kappa} at step {step}.")

    @classmethod
    def from_warmup(cls, kappa: float, kappa_warmup: float, kappa_warmup_steps: int) -> KappaSchedule:
        """`kappa_warmup` for the first `kappa_warmup_steps` steps, then `kappa` (the paper's two pieces)."""
        for name, value in (("kappa", kappa), ("kappa_warmup", kappa_warmup)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1] (p is normalised), got {value}.")
        if kappa_warmup_steps < 0:
            raise ValueError(f"kappa_warmup_steps must be >= 0, got {kappa_warmup_steps}.")
        if kappa_warmup_steps == 0:
            return cls(((0, kappa),))
        return cls(((0, kappa_warmup), (kappa_warmup_steps, kappa)))

    @classmethod
    def parse(cls, pieces: Sequence[str]) -> KappaSchedule:
        """Build a schedule from `"step:kappa"` strings, e.g. `["0:0.3", "20:0.8"]`."""
        parsed = []
        for piece in pieces:
            try:
                step, kappa = piece.split(":")
                parsed.append((int(step), float(kappa)))
            except ValueError:
                raise ValueError(
                    f"kappa schedule piece {piece!r} is not of the form 'step:kappa' (e.g. '20:0.8')."
                ) from None
        return cls(tuple(parsed))

    def __call__(self, step: int) -> float:
        return next(kappa for first_step, kappa in reversed(self.pieces) if step >= first_step)


@dataclass
class BankEntry:
    row: dict[str, Any]
    priority: float
    replays: int = 0
    tiebreak: float = 0.0  # drawn at insertion, orders equal priorities reproducibly
    # The entry's current heap items carry this stamp; items with an older one are stale.
    stamp: int = field(default=0, compare=False)


@dataclass
class ReplayBank:
    """Replay bank of high-variance prompts (paper §3.2), keyed by prompt.

    Entries are taken highest priority first, at most `replay_limit` times each; when full, the lowest priority
    entry is evicted. Priorities follow `P <- momentum * P + (1 - momentum) * p` with `p` the prompt's latest
    normalised variance (the paper leaves the update target undefined; this is our choice). Order is by
    `(priority, tiebreak, key)`, so it is deterministic given `seed`: every process holding a bank fed the same calls
    holds the same bank, and a bank restored from `state_dict` behaves as the original.

    Two heaps (lowest first for eviction, highest first for replay) make `add`, `update` and `take` logarithmic in
    the bank size. They are lazy: an update pushes new items and the old ones, whose stamp no longer matches the
    entry's, are skipped when they surface; the heaps are rebuilt when stale items outnumber live ones.

    Args:
        capacity (`int`):
            Maximum number of prompts held.
        momentum (`float`, *optional*, defaults to `0.9`):
            Weight of the old priority in the momentum update.
        replay_limit (`int`, *optional*, defaults to `2`):
            Number of replays after which an entry leaves the bank.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the tie-breaking generator.
    """

    capacity: int
    momentum: float = 0.9
    replay_limit: int = 2
    seed: int = 0
    entries: dict[str, BankEntry] = field(default_factory=dict, init=False)

    def __post_init__(self):
        if self.capacity < 0:
            raise ValueError(f"replay bank capacity must be >= 0, got {self.capacity}.")
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"replay momentum must lie in [0, 1], got {self.momentum}.")
        if self.replay_limit < 1:
            raise ValueError(f"replay limit must be >= 1, got {self.replay_limit}.")
        self._rng = random.Random(self.seed)
        self._rebuild_heaps()

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def add(self, key: str, row: dict[str, Any], p: float) -> None:
        """Insert a prompt that passed the threshold, or momentum-update it if already held."""
        if key in self.entries:
            self.update(key, p)
            return
        if self.capacity == 0:
            return
        self.entries[key] = BankEntry(row=row, priority=p, tiebreak=self._rng.random())
        self._push(key)
        if len(self.entries) > self.capacity:
            while True:  # the new entry itself is evicted when it is the lowest
                _, _, lowest, stamp = heapq.heappop(self._lowest)
                if self._is_current(lowest, stamp):
                    del self.entries[lowest]
                    break
        self._drop_stale_items()

    def update(self, key: str, p: float) -> None:
        """Momentum-update the priority of a held prompt with its newly observed `p` (no-op if not held)."""
        if key in self.entries:
            entry = self.entries[key]
            entry.priority = self.momentum * entry.priority + (1.0 - self.momentum) * p
            self._push(key)
            self._drop_stale_items()

    def take(self, n: int, exclude: Collection[str] = ()) -> list[tuple[str, dict[str, Any]]]:
        """Count a replay of each of the `n` highest-priority prompts not in `exclude` and return `(key, row)` pairs.

        An entry leaves the bank at its `replay_limit`-th replay.
        """
        exclude = frozenset(exclude)
        taken, put_back = [], []
        while len(taken) < n and self._highest:
            item = heapq.heappop(self._highest)
            key, stamp = item[2], item[3]
            if not self._is_current(key, stamp):
                continue
            if key not in exclude:
                entry = self.entries[key]
                entry.replays += 1
                taken.append((key, entry.row))
                if entry.replays >= self.replay_limit:
                    del self.entries[key]
                    continue
            put_back.append(item)  # still held, priority unchanged: its item stays current
        for item in put_back:
            heapq.heappush(self._highest, item)
        self._drop_stale_items()
        return taken

    def available(self, exclude: Collection[str] = ()) -> int:
        """Number of entries `take(..., exclude)` can return."""
        return len(self.entries) - sum(k in self.entries for k in frozenset(exclude))

    def stats(self) -> dict[str, float]:
        """Size, mean priority and mean replay count, for logging."""
        size = len(self.entries)
        return {
            "bank_size": float(size),
            "bank_mean_priority": sum(e.priority for e in self.entries.values()) / size if size else 0.0,
            "bank_mean_replays": sum(e.replays for e in self.entries.values()) / size if size else 0.0,
        }

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self._rng.getstate()
        return {
            "entries": [[key, e.row, e.priority, e.replays, e.tiebreak] for key, e in self.entries.items()],
            "rng_state": [version, list(internal), gauss],
        }

    def load_state_dict(self, state: dict[str, Any]) -> dict[str, int]:
        """Restore a saved bank under this bank's own settings, which may differ from the saved run's.

        Entries replayed `replay_limit` times leave, then the lowest priorities are evicted down to `capacity`.

        Returns:
            `dict[str, int]`: how many entries each rule removed (`past_replay_limit`, `over_capacity`).
        """
        self.entries = {
            key: BankEntry(row, priority, replays, tiebreak)
            for key, row, priority, replays, tiebreak in state["entries"]
        }
        version, internal, gauss = state["rng_state"]
        self._rng.setstate((version, tuple(internal), gauss))
        spent = [key for key, entry in self.entries.items() if entry.replays >= self.replay_limit]
        for key in spent:
            del self.entries[key]
        self._rebuild_heaps()
        over_capacity = max(0, len(self.entries) - self.capacity)
        for _ in range(over_capacity):
            del self.entries[heapq.heappop(self._lowest)[2]]  # fresh heaps: every item is current
        self._rebuild_heaps()
        return {"past_replay_limit": len(spent), "over_capacity": over_capacity}

    def _push(self, key: str) -> None:
        """Give `key`'s entry a new stamp and push it onto both heaps (its older items become stale)."""
        entry = self.entries[key]
        self._stamp += 1
        entry.stamp = self._stamp
        heapq.heappush(self._lowest, (entry.priority, entry.tiebreak, key, entry.stamp))
        heapq.heappush(self._highest, (-entry.priority, -entry.tiebreak, key, entry.stamp))

    def _drop_stale_items(self) -> None:
        """Rebuild the heaps once stale items outnumber current ones, so they stay O(bank size)."""
        if len(self._lowest) + len(self._highest) > 4 * len(self.entries) + 64:
            self._rebuild_heaps()

    def _is_current(self, key: str, stamp: int) -> bool:
        entry = self.entries.get(key)
        return entry is not None and entry.stamp == stamp

    def _rebuild_heaps(self) -> None:
        """Heaps holding exactly one (current) item per entry."""
        self._stamp = 0
        for entry in self.entries.values():
            self._stamp += 1
            entry.stamp = self._stamp
        self._lowest = [(e.priority, e.tiebreak, key, e.stamp) for key, e in self.entries.items()]
        self._highest = [(-e.priority, -e.tiebreak, key, e.stamp) for key, e in self.entries.items()]
        heapq.heapify(self._lowest)
        heapq.heapify(self._highest)


@dataclass
class Candidate:
    """One generated group: where it came from and how it scored."""

    process: int
    round: int
    index: int  # group index within its process's output of that round
    p: float
    source: str  # "fresh" (the dataloader's batch), "bank" (replayed) or "refill" (extra dataset prompts)
    key: str


@dataclass(frozen=True)
class PlannedGroup:
    """A prompt planned for one generation call: its key, its dataset row, and where it came from."""

    key: str
    row: dict[str, Any]
    source: str  # "fresh" (the dataloader's batch), "bank" (replayed) or "refill" (extra dataset prompts)
    predicted: float | None = None  # predicted probability of passing kappa, None when not predicted


@dataclass
class BatchSelection:
    """Chooses, per process, which generated groups make up the training batch.

    Round 0 is the first generation call. Each process keeps its groups with `p >= kappa` (in order) until it has
    `groups_per_process`; with `pooled`, a passing group whose own process is full fills a slot of the first process
    that still has one (its rows move there), so no process trains a fallback group while another one has a passing
    group to spare. Refill rounds add candidates; `finish()` fills what is still missing with the highest-`p` dropped
    groups (of the same process, or of any process when pooled), so the batch size never changes. All processes run
    it on the same gathered scores and so take the same decisions.
    """

    num_processes: int
    groups_per_process: int
    kappa: float
    pooled: bool = False
    chosen: list[list[Candidate]] = field(init=False)
    dropped: list[Candidate] = field(default_factory=list, init=False)
    surplus: list[Candidate] = field(default_factory=list, init=False)
    fallback: list[Candidate] = field(default_factory=list, init=False)

    def __post_init__(self):
        self.chosen = [[] for _ in range(self.num_processes)]

    def missing(self) -> list[int]:
        return [self.groups_per_process - len(chosen) for chosen in self.chosen]

    def offer(self, candidates: Sequence[Candidate]) -> None:
        for candidate in candidates:
            if candidate.p < self.kappa:
                self.dropped.append(candidate)
                continue
            slot = self._process_with_room(candidate.process)
            if slot is None:
                self.surplus.append(candidate)
            else:
                self.chosen[slot].append(candidate)

    def finish(self) -> None:
        """Fill the remaining slots with the best dropped groups (recorded in `fallback`)."""
        for candidate in sorted(self.dropped, key=lambda c: -c.p):
            slot = self._process_with_room(candidate.process)
            if slot is not None:
                self.chosen[slot].append(candidate)
                self.fallback.append(candidate)

    def moved(self) -> list[Candidate]:
        """Chosen groups that train on another process than the one that generated them."""
        return [c for process, chosen in enumerate(self.chosen) for c in chosen if c.process != process]

    def _process_with_room(self, own: int) -> int | None:
        if len(self.chosen[own]) < self.groups_per_process:
            return own
        if self.pooled:
            return next((i for i, chosen in enumerate(self.chosen) if len(chosen) < self.groups_per_process), None)
        return None


def plan_refill(missing: Sequence[int], bank_rows: int) -> tuple[int, list[int]]:
    """Split one refill round across processes.

    Every process must generate the same number of groups (generation is a collective call), so each generates
    `max(missing)` groups; a process short of `m` groups gets up to `m` bank prompts (they come first, so they are
    offered to the batch first) and dataset prompts for the rest.

    Args:
        missing (`Sequence[int]`):
            Groups still missing per process.
        bank_rows (`int`):
            Bank prompts available this round.

    Returns:
        `tuple[int, list[int]]`: groups per process this round, and how many of them are bank prompts, per process.
    """
    from_bank = []
    for need in missing:
        from_bank.append(min(need, bank_rows))
        bank_rows -= from_bank[-1]
    return max(missing), from_bank
