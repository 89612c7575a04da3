"""The names VCRLTrainer logs its curriculum under, and the run summary read back from the logs.

One home for the names: the trainer writes them, the plots, the demo, the smoke check and the model card read them.
Plain Python, no TRL import.
"""

PREFIX = "vcrl/"
KAPPA = "vcrl/kappa"
P_MEAN = "vcrl/p_mean"
P_HIST_PREFIX = "vcrl/p_hist/"  # + "<low>-<high>"
KEPT_FRACTION = "vcrl/kept_fraction"
GROUPS_FROM_BANK = "vcrl/groups_from_bank"
GROUPS_FROM_REFILL = "vcrl/groups_from_refill"
GROUPS_FROM_FALLBACK = "vcrl/groups_from_fallback"
REFILL_ROUNDS = "vcrl/refill_rounds"
BANK_SIZE = "vcrl/bank_size"
BANK_MEAN_PRIORITY = "vcrl/bank_mean_priority"
BANK_MEAN_REPLAYS = "vcrl/bank_mean_replays"
ROLLOUTS_PER_TRAINED_GROUP = "vcrl/rollouts_per_trained_group"
NONZERO_ADVANTAGE_FRACTION = "vcrl/nonzero_advantage_fraction"
SKIPPED_BEFORE_ROLLOUT = "vcrl/skipped_before_rollout"
PREDICTION_ACCURACY = "vcrl/prediction_accuracy"
GROUPS_MOVED = "vcrl/groups_moved"
P_HIST_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def p_hist_name(low: float, high: float) -> str:
    return f"{P_HIST_PREFIX}{low:.1f}-{high:.1f}"


def curriculum_summary(log_history: list[dict]) -> dict[str, float]:
    """Run-level curriculum statistics from a trainer's log history (per logging step averages, as TRL logs them).

    Returns an empty dict for a run without VCRL metrics (e.g. both switches off).
    """
    steps = [entry for entry in log_history if KAPPA in entry]
    if not steps:
        return {}

    def mean(name):
        return sum(entry[name] for entry in steps) / len(steps)

    return {
        "logged steps": len(steps),
        "final kappa": steps[-1][KAPPA],
        "mean p of first-pass groups": mean(P_MEAN),
        "mean kept fraction": mean(KEPT_FRACTION),
        "mean groups from bank per step": mean(GROUPS_FROM_BANK),
        "mean groups from refill per step": mean(GROUPS_FROM_REFILL),
        "mean groups from fallback per step": mean(GROUPS_FROM_FALLBACK),
        "mean rollouts per trained group": mean(ROLLOUTS_PER_TRAINED_GROUP),
        "mean non-zero-advantage fraction": mean(NONZERO_ADVANTAGE_FRACTION),
        "final bank size": steps[-1][BANK_SIZE],
    }
