import math
from dataclasses import dataclass, field, fields

from trl import GRPOConfig

from .curriculum import KappaSchedule, ReplayBank
from .prediction import RolloutScreen


@dataclass
class VCRLConfig(GRPOConfig):
    r"""
    Configuration class for [`VCRLTrainer`]: [`~trl.GRPOConfig`] plus the curriculum of VCRL
    ([arXiv 2509.19803](https://huggingface.co/papers/2509.19803)).

    Only the parameters specific to VCRL are listed here; see [`~trl.GRPOConfig`] for the others.

    > Parameters that control the threshold (paper §3.1)

    kappa (`float`, *optional*, defaults to `0.8`):
        Threshold on the normalised group reward variance `p` after the warm-up: groups with `p < kappa` are dropped.
    kappa_warmup (`float`, *optional*, defaults to `0.3`):
        Threshold during the first `kappa_warmup_steps` rollout steps, low so the replay bank fills.
    kappa_warmup_steps (`int`, *optional*, defaults to `20`):
        Number of rollout steps that use `kappa_warmup`. `0` uses `kappa` from the start. A rollout step is one
        generation batch, the paper's training step; it equals an optimizer step unless `num_iterations > 1` or
        `steps_per_generation > gradient_accumulation_steps`, which reuse one generation batch for several.
    kappa_schedule (`list[str]`, *optional*):
        A general piecewise-constant schedule over rollout steps as `"step:kappa"` pieces, e.g. `["0:0.3", "20:0.5", "100:0.8"]`.
        Replaces `kappa`, `kappa_warmup` and `kappa_warmup_steps`, which must then keep their defaults.
    reward_range (`list[float]`, *optional*, defaults to `[0.0, 1.0]`):
        Bounds `[a, b]` of the combined (weighted-sum) reward; `p` is normalised by the largest variance rewards in
        this range can have. A reward outside it is an error.

    > Parameters that control the replay bank (paper §3.2)

    replay_bank_size (`int`, *optional*, defaults to `1024`):
        Maximum number of prompts in the replay bank; the lowest priority is evicted when full.
    replay_momentum (`float`, *optional*, defaults to `0.9`):
        Momentum `alpha` of the priority update `P <- alpha * P + (1 - alpha) * p`.
    replay_limit (`int`, *optional*, defaults to `2`):
        Number of replays after which a prompt leaves the bank.
    max_refill_rounds (`int`, *optional*, defaults to `3`):
        Extra generation calls per generation batch to replace dropped groups: bank prompts first, then further
        dataset prompts. Whatever is still missing is filled with the best dropped groups, so the batch size never
        changes.

    > Parameters that control the rollout economy (ours; the paper generates every drawn prompt)

    efficient_sampling (`bool`, *optional*, defaults to `True`):
        Spend rollouts only where they are likely to pay: keep a history of each prompt's pass rate, replace prompts
        predicted to give a zero-variance group before they are generated (by dataset prompts worth generating),
        refill with bank prompts first and then only with prompts predicted to pass `kappa` (rounds sized from those
        predictions), and pool passing groups across processes. The threshold, the fallback and the loss are
        unchanged; only which prompts are generated changes. `False` is the paper's procedure: every drawn prompt is
        generated, and each process refills its own batch.
    skip_below (`float`, *optional*, defaults to `0.3`):
        A prompt seen before is skipped when its predicted probability of giving a group with any reward variance (in
        the first generation call), or of passing `kappa` (in refill rounds), is below this (0.3: skipped from the first
        call after one zero-variance group, kept after one group with a single success).
    explore_floor (`float`, *optional*, defaults to `0.05`):
        Probability that a prompt predicted to fail is generated anyway right after its last try, in the first
        generation call of a step (refill rounds take only prompts predicted to pass).
    explore_doubling (`int`, *optional*, defaults to `100`):
        Rollout steps after which that exploration probability doubles (a prompt unseen for long comes back).
    history_size (`int`, *optional*, defaults to `100000`):
        Prompts whose pass-rate history is kept; the least recently generated is forgotten first.

    > Ablation switches

    dynamic_sampling (`bool`, *optional*, defaults to `True`):
        Drop groups below the threshold and refill the batch. With `dynamic_sampling=False` and `replay=False`,
        training is exactly GRPO.
    replay (`bool`, *optional*, defaults to `True`):
        Refill from the replay bank before drawing new dataset prompts. `False` with `dynamic_sampling=True` is
        DAPO-style dynamic sampling on the VCRL score.
    """

    kappa: float = field(
        default=0.8,
        metadata={"help": "Threshold on the normalised group variance p after the warm-up (paper §3.1: 0.8)."},
    )
    kappa_warmup: float = field(
        default=0.3,
        metadata={"help": "Threshold during the warm-up, low so the replay bank fills (paper §4.1: 0.3)."},
    )
    kappa_warmup_steps: int = field(
        default=20,
        metadata={
            "help": "Rollout steps (generation batches, the paper's steps) using `kappa_warmup` (paper §4.1: 20). 0 "
            "uses `kappa` from the start."
        },
    )
    kappa_schedule: list[str] | None = field(
        default=None,
        metadata={
            "help": "General piecewise-constant threshold over rollout steps as 'step:kappa' pieces, e.g. 0:0.3 20:0.8 (ours; the "
            "paper uses two pieces). Replaces kappa, kappa_warmup and kappa_warmup_steps, which must keep their defaults."
        },
    )
    reward_range: list[float] = field(
        default_factory=lambda: [0.0, 1.0],
        metadata={
            "help": "Bounds [a, b] of the combined reward used to normalise the variance (ours; the paper only treats "
            "0/1 rewards). Rewards outside it raise an error."
        },
    )
    replay_bank_size: int = field(
        default=1024,
        metadata={
            "help": "Capacity of the replay bank in prompts; lowest priority evicted when full (not in the paper)."
        },
    )
    replay_momentum: float = field(
        default=0.9,
        metadata={"help": "Momentum alpha of the bank priority update P <- alpha*P + (1-alpha)*p (paper §3.2: 0.9)."},
    )
    replay_limit: int = field(
        default=2,
        metadata={"help": "Replays after which a prompt leaves the bank (paper §3.2: 2)."},
    )
    max_refill_rounds: int = field(
        default=3,
        metadata={
            "help": "Extra generation calls per generation batch to replace dropped groups, bank prompts first, then "
            "new dataset prompts (ours). Still-missing slots take the best dropped groups."
        },
    )
    efficient_sampling: bool = field(
        default=True,
        metadata={
            "help": "Skip prompts predicted to give zero-variance groups before rollout, refill from the bank and "
            "then only with prompts predicted to pass kappa, pool passing groups across processes (ours). False: the "
            "paper's procedure."
        },
    )
    skip_below: float = field(
        default=0.3,
        metadata={
            "help": "Predicted probability of a group with any reward variance (first generation call), or of passing "
            "kappa (refill rounds), under which a seen prompt is skipped (ours, after GRESO: 0.3 skips after one "
            "zero-variance group)."
        },
    )
    explore_floor: float = field(
        default=0.05,
        metadata={
            "help": "Probability that a prompt predicted to fail is generated anyway in a step's first generation call "
            "(ours, after GRESO)."
        },
    )
    explore_doubling: int = field(
        default=100,
        metadata={"help": "Rollout steps after which a skipped prompt's exploration probability doubles (ours)."},
    )
    history_size: int = field(
        default=100_000,
        metadata={"help": "Prompts whose pass-rate history is kept; least recently generated forgotten (ours)."},
    )
    dynamic_sampling: bool = field(
        default=True,
        metadata={
            "help": "Drop groups with p < kappa and refill the batch (paper §3.1). Off with replay off is GRPO."
        },
    )
    replay: bool = field(
        default=True,
        metadata={
            "help": "Refill from the replay bank before new dataset prompts (paper §3.2). Needs dynamic_sampling."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.kappa_schedule is not None:
            overridden = [
                f.name for f in fields(VCRLConfig) if f.name in _WARMUP_FIELDS and getattr(self, f.name) != f.default
            ]
            if overridden:
                raise ValueError(
                    f"kappa_schedule={self.kappa_schedule} replaces {', '.join(_WARMUP_FIELDS)}; do not also set "
                    f"{', '.join(overridden)}."
                )
        self.get_kappa_schedule()  # validates the kappa fields
        try:
            ReplayBank(self.replay_bank_size, self.replay_momentum, self.replay_limit)
        except ValueError as error:
            raise ValueError(
                f"replay_bank_size={self.replay_bank_size}, replay_momentum={self.replay_momentum}, "
                f"replay_limit={self.replay_limit}: {error}"
            ) from None
        if len(self.reward_range) != 2 or not all(math.isfinite(x) for x in self.reward_range):
            raise ValueError(f"reward_range must be two finite numbers [low, high], got {self.reward_range}.")
        if self.reward_range[0] >= self.reward_range[1]:
            raise ValueError(f"reward_range={self.reward_range} is empty: low must be smaller than high.")
        if self.max_refill_rounds < 0:
            raise ValueError(f"max_refill_rounds must be >= 0, got {self.max_refill_rounds}.")
        if self.replay and not self.dynamic_sampling:
            raise ValueError(
                "replay=True needs dynamic_sampling=True: the bank only refills groups that dynamic sampling dropped. "
                "Set replay=False for plain GRPO."
            )
        if not self.dynamic_sampling:
            return  # exactly GRPO: GRPOConfig's own checks are all that apply
        if self.efficient_sampling:
            RolloutScreen(self.skip_below, self.explore_floor, self.explore_doubling)  # validates the screen fields
            if self.history_size < 1:
                raise ValueError(f"history_size must be >= 1, got {self.history_size}.")
        elif self.max_refill_rounds == 0:
            raise ValueError(
                "max_refill_rounds=0 with dynamic_sampling=True and efficient_sampling=False replaces no dropped "
                "group: the batch would be GRPO's batch reordered. Set max_refill_rounds >= 1, or "
                "dynamic_sampling=False and replay=False for GRPO."
            )
        rows_per_process = self.per_device_train_batch_size * self.steps_per_generation
        if rows_per_process % self.num_generations:
            raise ValueError(
                f"Each process generates per_device_train_batch_size * steps_per_generation = "
                f"{self.per_device_train_batch_size} * {self.steps_per_generation} = {rows_per_process} rows, which is "
                f"not a whole number of groups of num_generations={self.num_generations}; VCRL keeps or drops whole "
                f"groups per process. Choose values so that num_generations divides {rows_per_process}."
            )

    def get_kappa_schedule(self) -> KappaSchedule:
        """The kappa schedule these settings describe, over rollout steps (generation batches)."""
        if self.kappa_schedule is None:
            return KappaSchedule.from_warmup(self.kappa, self.kappa_warmup, self.kappa_warmup_steps)
        try:
            return KappaSchedule.parse(self.kappa_schedule)
        except ValueError as error:
            raise ValueError(f"kappa_schedule={self.kappa_schedule}: {error}") from None

    @classmethod
    def from_grpo_config(cls, args: GRPOConfig) -> "VCRLConfig":
        """A `VCRLConfig` with every setting of `args` and VCRL's defaults."""
        values = {f.name: getattr(args, f.name) for f in fields(args) if f.init}
        # GRPOConfig filled both after validation; passing both back would be rejected as a conflict.
        values["generation_batch_size"] = None
        return cls(**values)


_WARMUP_FIELDS = ("kappa", "kappa_warmup", "kappa_warmup_steps")
