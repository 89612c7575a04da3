"""Pictures of a VCRL run from the trainer's log history: the curriculum itself, and runs compared side by side.

The trainer logs its `vcrl/*` metrics next to TRL's own (`reward`, `reward_std`, `loss`, ...) in
`trainer.state.log_history`, which every checkpoint stores in `trainer_state.json`. Figures are drawn with matplotlib's
Agg canvas directly (no pyplot), so plotting needs no display and never changes the user's matplotlib backend.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import metrics

logger = logging.getLogger(__name__)

TRAINER_STATE_FILE = "trainer_state.json"
BANK_SOURCES = {
    metrics.GROUPS_FROM_BANK: "replayed from bank",
    metrics.GROUPS_FROM_REFILL: "fresh refill",
    metrics.GROUPS_FROM_FALLBACK: "fallback (below κ)",
}
BANK_COLORS = ("tab:blue", "tab:green", "tab:red")
X_AXES = ("step", "rollouts")


def load_log_history(source) -> list[dict[str, Any]]:
    """The log history of a training run.

    Args:
        source (`list[dict]`, `str`, `os.PathLike` or `transformers.Trainer`):
            The log history itself; a `trainer_state.json` file; an output or checkpoint directory holding one (an
            output directory without one is searched for its latest `checkpoint-N` sub-directory); or a trainer,
            whose `state.log_history` is read.

    Returns:
        `list[dict]`: one dict per logging event, as in `trainer.state.log_history`.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            path = _trainer_state_in(path)
        elif not path.is_file():
            raise FileNotFoundError(f"No such file or directory: {str(path)!r}")
        state = json.loads(path.read_text())
        if "log_history" not in state:
            raise ValueError(f"{str(path)!r} has no 'log_history' key; is it a trainer_state.json?")
        return state["log_history"]
    if isinstance(source, list):
        return source
    state = getattr(source, "state", None)
    if state is not None and hasattr(state, "log_history"):
        return state.log_history
    raise TypeError(
        f"Cannot read a log history from a {type(source).__name__}: expected a list of log dicts, a path to "
        f"{TRAINER_STATE_FILE} or to an output/checkpoint directory, or a trainer with `state.log_history`."
    )


def _trainer_state_in(directory: Path) -> Path:
    if (directory / TRAINER_STATE_FILE).is_file():
        return directory / TRAINER_STATE_FILE
    checkpoints = []
    for child in directory.iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", child.name)
        if match and (child / TRAINER_STATE_FILE).is_file():
            checkpoints.append((int(match.group(1)), child))
    if not checkpoints:
        raise FileNotFoundError(
            f"No {TRAINER_STATE_FILE} in {str(directory)!r} nor in any checkpoint-N sub-directory of it."
        )
    # The latest checkpoint's history contains all earlier ones.
    return max(checkpoints)[1] / TRAINER_STATE_FILE


def curriculum_frame(source) -> dict[str, list]:
    """The per-step training metrics of a run, as columns.

    Only training-step rows are kept: those with a `step` and a `loss`, a `reward` or a `vcrl/*` metric (evaluation
    rows and the final summary row are left out). A metric missing from a row is `nan`.

    Args:
        source (`list[dict]`, `str`, `os.PathLike` or `transformers.Trainer`):
            Anything [`load_log_history`] accepts.

    Returns:
        `dict[str, list]`: `"step"` first, then every other metric in name order, except the `vcrl/p_hist/<low>-<high>`
        bins, which come last, ordered by their lower edge.
    """
    rows = [
        row
        for row in load_log_history(source)
        if "step" in row and any(key in ("loss", "reward") or key.startswith(metrics.PREFIX) for key in row)
    ]
    if not rows:
        raise ValueError("The log history has no training-step metrics (no row with 'loss', 'reward' or 'vcrl/*').")
    names = {key for row in rows for key in row} - {"step"}
    bins = sorted(
        (name for name in names if name.startswith(metrics.P_HIST_PREFIX)), key=lambda name: _bin_edges(name)[0]
    )
    columns = ["step"] + sorted(names - set(bins)) + bins
    return {column: [row.get(column, math.nan) for row in rows] for column in columns}


def _bin_edges(column: str) -> tuple[float, float]:
    try:
        low, high = column.removeprefix(metrics.P_HIST_PREFIX).split("-")
        return float(low), float(high)
    except ValueError as error:
        raise ValueError(
            f"Cannot read the bin edges of metric {column!r}: expected '{metrics.P_HIST_PREFIX}<low>-<high>'."
        ) from error


def plot_curriculum(
    source,
    path: str | os.PathLike | None = None,
    title: str | None = None,
    reward_range: Sequence[float] = (0.0, 1.0),
) -> Figure:
    """Four panels showing what the curriculum did at each step.

    1. Where the first-pass groups' normalised variance `p` falls (stacked histogram bins), with the threshold `κ`
       and the mean `p` on the right axis.
    2. The fraction of first-pass groups kept (`p >= κ`) and of trained groups with a non-zero advantage.
    3. Where the trained groups that were not first-pass came from (bank replays, fresh refills, below-κ fallbacks),
       with the bank's size and its entries' mean replay count.
    4. The mean training reward, ± its standard deviation when logged, cut to `reward_range`: the spread of the
       completions' rewards, which a band reaching outside the rewards' possible values would misstate.

    Panels whose metrics were not logged (e.g. a plain GRPO run) say so instead of failing.

    Args:
        source (`list[dict]`, `str`, `os.PathLike` or `transformers.Trainer`):
            Anything [`load_log_history`] accepts.
        path (`str` or `os.PathLike`, *optional*, defaults to `None`):
            Where to save the figure as PNG; not saved when `None`.
        title (`str`, *optional*, defaults to `None`):
            Title above the panels.
        reward_range (`Sequence[float]`, *optional*, defaults to `(0.0, 1.0)`):
            Lowest and highest reward a completion can get (`VCRLConfig.reward_range`); a logged mean reward outside
            it is an error.

    Returns:
        `matplotlib.figure.Figure`
    """
    frame = curriculum_frame(source)
    _check_reward_range(frame, reward_range)
    figure = Figure(figsize=(13, 8.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2, sharex=True)
    _draw_p_histogram(axes[0, 0], frame)
    _draw_kept(axes[0, 1], frame)
    _draw_bank(axes[1, 0], frame)
    _draw_reward(axes[1, 1], frame, reward_range)
    for ax in axes[1]:
        ax.set_xlabel("step")
        if ax.get_legend() is not None:  # the bottom row's legends go below the tick labels and the x label
            ax.get_legend().set_bbox_to_anchor((0.5, -0.15), transform=ax.transAxes)
    if title:
        figure.suptitle(title)
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure


def _draw_p_histogram(ax, frame: dict[str, list]) -> None:
    ax.set_title("Normalised variance p of first-pass groups")
    bins = [column for column in frame if column.startswith(metrics.P_HIST_PREFIX)]
    if not bins and metrics.KAPPA not in frame:
        _no_metrics(ax)
        return
    steps = frame["step"]
    if bins:
        labels = []
        for column in bins:
            low, high = _bin_edges(column)
            closing = "]" if column == bins[-1] else ")"  # the trainer's last bin includes p = 1
            labels.append(f"p in [{low:g}, {high:g}{closing}")
        _stack(ax, steps, [frame[column] for column in bins], labels, _colors("viridis", len(bins)))
    ax.set_ylabel("fraction of groups")
    right = ax.twinx()
    for axis in (ax, right):  # same range on both sides: the fractions and p both run from 0 to 1
        axis.set_ylim(0, 1.02)
    right.set_ylabel("p")
    if metrics.KAPPA in frame:
        right.plot(
            steps, frame[metrics.KAPPA], color="crimson", lw=2, drawstyle="steps-mid", label="κ (keep if p ≥ κ)"
        )
    if metrics.P_MEAN in frame:
        right.plot(steps, frame[metrics.P_MEAN], color="black", lw=1.5, ls="--", label="mean p")
    _legend(ax, right)


def _draw_kept(ax, frame: dict[str, list]) -> None:
    ax.set_title("Useful groups")
    series = {
        metrics.KEPT_FRACTION: "first-pass groups kept (p ≥ κ)",
        metrics.NONZERO_ADVANTAGE_FRACTION: "trained groups with non-zero advantage",
    }
    if not any(column in frame for column in series):
        _no_metrics(ax)
        return
    for column, label in series.items():
        if column in frame:
            ax.plot(frame["step"], frame[column], label=label)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction")
    _legend(ax)


def _draw_bank(ax, frame: dict[str, list]) -> None:
    ax.set_title("Groups not from the first pass, and the replay bank")
    if not any(column in frame for column in [*BANK_SOURCES, metrics.BANK_SIZE, metrics.BANK_MEAN_REPLAYS]):
        _no_metrics(ax)
        return
    steps = frame["step"]
    sources = [
        (column, label, color) for (column, label), color in zip(BANK_SOURCES.items(), BANK_COLORS) if column in frame
    ]
    if sources:
        columns, labels, colors = zip(*sources)
        _stack(ax, steps, [frame[column] for column in columns], labels, colors, alpha=0.7)
    ax.set_ylabel("trained groups per step")
    size_axis = ax.twinx()
    if metrics.BANK_SIZE in frame:
        size_axis.plot(steps, frame[metrics.BANK_SIZE], color="black", lw=1.5, label="bank size")
    size_axis.set_ylabel("bank size")
    size_axis.set_ylim(bottom=0)
    if metrics.BANK_MEAN_REPLAYS not in frame:
        _legend(ax, size_axis)
        return
    # A third y-axis: mean replays (0 to the replay limit) shares no scale with the counts or the bank size.
    replays_axis = ax.twinx()
    replays_axis.spines.right.set_position(("axes", 1.13))
    replays_axis.plot(steps, frame[metrics.BANK_MEAN_REPLAYS], color="tab:purple", ls=":", lw=2, label="mean replays")
    replays_axis.set_ylabel("mean replays of bank entries", color="tab:purple")
    replays_axis.tick_params(axis="y", colors="tab:purple")
    replays_axis.set_ylim(bottom=0)
    _legend(ax, size_axis, replays_axis)


def _check_reward_range(frame: dict[str, list], reward_range: Sequence[float]) -> None:
    if len(reward_range) != 2 or not reward_range[0] < reward_range[1]:
        raise ValueError(f"reward_range must be [low, high] with low < high, got {list(reward_range)}.")
    low, high = reward_range
    outside = [(step, mean) for step, mean in zip(frame["step"], frame.get("reward", [])) if not low <= mean <= high]
    if outside:
        step, mean = outside[0]
        raise ValueError(
            f"The mean reward {mean} logged at step {step} lies outside reward_range={list(reward_range)}; pass the "
            "range the run's rewards can take (its VCRLConfig.reward_range)."
        )


def _draw_reward(ax, frame: dict[str, list], reward_range: Sequence[float]) -> None:
    ax.set_title("Training reward")
    if "reward" not in frame:
        _no_metrics(ax, "no reward logged")
        return
    steps, reward = frame["step"], frame["reward"]
    low, high = reward_range
    ax.plot(steps, reward, color="tab:orange", label="mean reward")
    if "reward_std" in frame:
        below = [max(low, m - s) for m, s in zip(reward, frame["reward_std"])]
        above = [min(high, m + s) for m, s in zip(reward, frame["reward_std"])]
        band_label = f"± std, within the reward range [{low:g}, {high:g}]"
        ax.fill_between(steps, below, above, color="tab:orange", alpha=0.2, label=band_label)
    margin = 0.02 * (high - low)
    ax.set_ylim(low - margin, high + margin)
    ax.set_ylabel("reward")
    _legend(ax)


def compare_runs(
    runs: Mapping[str, Any],
    metric: str = "reward",
    x: str = "step",
    groups_per_step: int | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """One metric of several runs, overlaid.

    With `x="rollouts"` runs are compared at equal generation cost: the x value of a logged step is the cumulative
    number of prompt groups generated (each of `num_generations` completions) up to that step,
    `sum over steps of vcrl/rollouts_per_trained_group × groups_per_step`. A logged value covers every step since
    the previous log row (`logging_steps > 1`). Runs without `vcrl/rollouts_per_trained_group` (plain GRPO, or VCRL with
    dynamic sampling off) generate exactly the groups they train on: 1 group generated per group trained.

    Args:
        runs (`Mapping[str, Any]`):
            Run name to anything [`load_log_history`] accepts.
        metric (`str`, *optional*, defaults to `"reward"`):
            Logged metric to plot, e.g. `"reward"`, `"grad_norm"`, `metrics.KEPT_FRACTION`. Runs that did not log it are
            left out with a warning.
        x (`str`, *optional*, defaults to `"step"`):
            `"step"` or `"rollouts"` (cumulative generated groups, see above).
        groups_per_step (`int`, *optional*, defaults to `None`):
            Prompt groups trained per optimizer step over all processes: `per_device_train_batch_size ×
            gradient_accumulation_steps × num_processes / num_generations`. Required when `x="rollouts"`.
        path (`str` or `os.PathLike`, *optional*, defaults to `None`):
            Where to save the figure as PNG; not saved when `None`.

    Returns:
        `matplotlib.figure.Figure`
    """
    if x not in X_AXES:
        raise ValueError(f"x={x!r} is not supported; choose one of {list(X_AXES)}.")
    if x == "rollouts" and (groups_per_step is None or groups_per_step <= 0):
        raise ValueError(
            f"x='rollouts' needs groups_per_step, a positive int; got groups_per_step={groups_per_step!r}."
        )
    figure = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    plotted = 0
    for name, source in runs.items():
        frame = curriculum_frame(source)
        if metric not in frame:
            logger.warning("Run %r did not log %r; left out of the comparison.", name, metric)
            continue
        xs = frame["step"] if x == "step" else _cumulative_rollouts(frame, groups_per_step)
        ax.plot(xs, frame[metric], label=name)
        plotted += 1
    if not plotted:
        raise ValueError(f"None of the runs {list(runs)} logged metric={metric!r}.")
    ax.set_xlabel("step" if x == "step" else "generated prompt groups (cumulative)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by {'step' if x == 'step' else 'generation cost'}")
    ax.grid(alpha=0.3)
    ax.legend()
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure


def _cumulative_rollouts(frame: dict[str, list], groups_per_step: int) -> list[float]:
    ratios = frame.get(metrics.ROLLOUTS_PER_TRAINED_GROUP, [1.0] * len(frame["step"]))
    total, previous_step, cumulative = 0.0, 0, []
    for step, ratio in zip(frame["step"], ratios):
        total += (1.0 if math.isnan(ratio) else ratio) * groups_per_step * (step - previous_step)
        previous_step = step
        cumulative.append(total)
    return cumulative


def _stack(ax, steps: list, series: list[list], labels: Sequence[str], colors: Sequence, alpha: float = 1.0) -> None:
    """Stacked per-step values. Drawn as step-shaped areas rather than bars: hundreds of thin bars alias into
    stripes."""
    ax.stackplot(steps, *series, labels=labels, colors=colors, alpha=alpha, step="mid", linewidth=0)


def _colors(colormap: str, count: int) -> list:
    cmap = colormaps[colormap]
    return [cmap(0.15 + 0.75 * i / max(count - 1, 1)) for i in range(count)]


def _legend(*axes) -> None:
    """One legend in the first axes, for the lines of all of them (twin axes included)."""
    handles, labels = [], []
    for ax in axes:
        ax_handles, ax_labels = ax.get_legend_handles_labels()
        handles += ax_handles
        labels += ax_labels
    if handles:
        # Below the panel: the stacked areas fill their axes, a legend inside would hide them.
        axes[0].legend(
            handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=3, fontsize="small", frameon=False
        )


def _no_metrics(ax, text: str = "no VCRL metrics") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.tick_params(axis="y", left=False, labelleft=False)
