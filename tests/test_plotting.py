"""Curriculum plots from synthetic log histories: the frame, the figure's content, the PNG, and where logs are read."""

import json
import math
from types import SimpleNamespace

import matplotlib.image
import pytest

from trl_vcrl.plotting import compare_runs, curriculum_frame, load_log_history, plot_curriculum

# Inserted out of order: the frame must order bins by their lower edge, not by insertion or name.
BINS = ["0.8-1.0", "0.0-0.2", "0.4-0.6", "0.2-0.4", "0.6-0.8"]


def vcrl_history(steps=(1, 2, 3, 4)):
    rows = []
    for i, step in enumerate(steps):
        row = {"loss": 0.1 * i, "reward": 0.2 + 0.1 * i, "reward_std": 0.3, "grad_norm": 1.0, "step": step}
        row.update({f"vcrl/p_hist/{edges}": (b + 1 + i) / (15 + 5 * i) for b, edges in enumerate(BINS)})
        row.update(
            {
                "vcrl/kappa": 0.3 if step <= 2 else 0.8,
                "vcrl/p_mean": 0.5,
                "vcrl/kept_fraction": 0.75 - 0.1 * i,
                "vcrl/nonzero_advantage_fraction": 1.0,
                "vcrl/groups_from_bank": i,
                "vcrl/groups_from_refill": 1,
                "vcrl/groups_from_fallback": 0,
                "vcrl/refill_rounds": 1,
                "vcrl/bank_size": 3 * i,
                "vcrl/bank_mean_priority": 0.9,
                "vcrl/bank_mean_replays": 0.5,
                "vcrl/rollouts_per_trained_group": 1.5,
            }
        )
        rows.append(row)
        rows.append({"eval_reward": 0.5, "eval_loss": 0.2, "step": step})  # evaluation rows are not training steps
    rows.append({"train_runtime": 12.5, "train_loss": 0.15, "step": steps[-1]})  # final summary row
    return rows


def grpo_history(steps=(1, 2, 3)):
    return [{"loss": 0.0, "reward": 0.1 * step, "reward_std": 0.2, "step": step} for step in steps]


def write_state(directory, history):
    directory.mkdir(parents=True)
    (directory / "trainer_state.json").write_text(
        json.dumps({"global_step": history[-1]["step"], "log_history": history})
    )


def test_frame_has_one_row_per_training_step_and_bins_by_lower_edge():
    history = vcrl_history()
    del history[2]["vcrl/kappa"]  # step 2 row: a metric missing from one row becomes nan
    frame = curriculum_frame(history)

    assert frame["step"] == [1, 2, 3, 4]
    assert frame["reward"] == pytest.approx([0.2, 0.3, 0.4, 0.5])
    assert (
        frame["vcrl/kappa"][0] == 0.3 and math.isnan(frame["vcrl/kappa"][1]) and frame["vcrl/kappa"][2:] == [0.8, 0.8]
    )
    bins = [column for column in frame if column.startswith("vcrl/p_hist/")]
    assert bins == [f"vcrl/p_hist/{edges}" for edges in ("0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0")]
    assert list(frame)[0] == "step" and list(frame)[-5:] == bins
    assert frame["vcrl/p_hist/0.0-0.2"][0] == pytest.approx(2 / 15)
    assert not any(column.startswith(("eval_", "train_")) for column in frame)
    assert all(len(values) == 4 for values in frame.values())


def test_history_without_training_metrics_is_an_error():
    with pytest.raises(ValueError, match="no training-step metrics"):
        curriculum_frame([{"train_runtime": 1.0, "step": 0}])


def test_plot_curriculum_draws_every_panel_and_writes_a_png(tmp_path):
    path = tmp_path / "curriculum.png"
    figure = plot_curriculum(vcrl_history(), path=path, title="VCRL run")

    histogram, kept, bank, reward = figure.axes[:4]
    assert [label.get_text() for label in histogram.get_legend().get_texts()] == [
        "p in [0, 0.2)",
        "p in [0.2, 0.4)",
        "p in [0.4, 0.6)",
        "p in [0.6, 0.8)",
        "p in [0.8, 1]",
        "κ (keep if p ≥ κ)",
        "mean p",
    ]
    top_bin = histogram.collections[-1].get_paths()[0].vertices
    assert top_bin[:, 1].max() == pytest.approx(1.0)  # the bins of a step stack up to 1
    assert [label.get_text() for label in bank.get_legend().get_texts()][:3] == [
        "replayed from bank",
        "fresh refill",
        "fallback (below κ)",
    ]
    lines = {line.get_label(): line for ax in figure.axes for line in ax.get_lines()}
    assert list(lines["κ (keep if p ≥ κ)"].get_ydata()) == [0.3, 0.3, 0.8, 0.8]
    assert list(lines["first-pass groups kept (p ≥ κ)"].get_ydata()) == pytest.approx([0.75, 0.65, 0.55, 0.45])
    assert list(lines["bank size"].get_ydata()) == [0, 3, 6, 9]
    assert list(lines["mean reward"].get_ydata()) == pytest.approx([0.2, 0.3, 0.4, 0.5])
    assert not any(text.get_text() == "no VCRL metrics" for ax in figure.axes for text in ax.texts)
    assert figure.get_suptitle() == "VCRL run"

    assert path.stat().st_size > 30_000
    height, width, _ = matplotlib.image.imread(path).shape
    assert (width, height) == (1300, 850)


def test_grpo_history_draws_the_reward_panel_only(tmp_path):
    path = tmp_path / "grpo.png"
    figure = plot_curriculum(grpo_history(), path=path)

    histogram, kept, bank, reward = figure.axes[:4]
    for ax in (histogram, kept, bank):
        assert [text.get_text() for text in ax.texts] == ["no VCRL metrics"]
        assert not ax.get_lines() and not ax.collections
    assert list(reward.get_lines()[0].get_ydata()) == pytest.approx([0.1, 0.2, 0.3])
    assert path.stat().st_size > 10_000


def _band(ax):
    """Lower and upper edge of the filled reward band of a panel (fill_between's polygon: lower edge, then upper)."""
    (band,) = ax.collections
    vertices = band.get_paths()[0].vertices[:, 1]
    return vertices.min(), vertices.max()


def test_reward_band_stays_within_the_reward_range():
    # A 0/1 reward at mean 0.1 has std 0.3: mean ± std would reach -0.2, which no completion can score.
    history = [{"reward": 0.1, "reward_std": 0.3, "step": 1}, {"reward": 0.9, "reward_std": 0.3, "step": 2}]
    reward = plot_curriculum(history).axes[3]
    assert _band(reward) == pytest.approx((0.0, 1.0))
    assert reward.get_ylim()[0] >= -0.05 and reward.get_ylim()[1] <= 1.05
    assert "± std, within the reward range [0, 1]" in [text.get_text() for text in reward.get_legend().get_texts()]

    # Another reward range: the band follows it.
    history = [{"reward": 1.5, "reward_std": 2.0, "step": 1}, {"reward": 2.5, "reward_std": 0.5, "step": 2}]
    assert _band(plot_curriculum(history, reward_range=[-1, 3]).axes[3]) == pytest.approx((-0.5, 3.0))


def test_mean_reward_outside_the_reward_range_is_an_error():
    with pytest.raises(ValueError, match=r"mean reward 1.5 logged at step 2 lies outside reward_range=\[0.0, 1.0\]"):
        plot_curriculum([{"reward": 0.5, "step": 1}, {"reward": 1.5, "step": 2}])
    with pytest.raises(ValueError, match=r"reward_range must be \[low, high\] with low < high, got \[1, 0\]"):
        plot_curriculum([{"reward": 0.5, "step": 1}], reward_range=(1, 0))


def test_load_from_a_trainer_state_file_and_a_trainer(tmp_path):
    history = vcrl_history()
    write_state(tmp_path / "out", history)
    assert load_log_history(tmp_path / "out" / "trainer_state.json") == history
    assert load_log_history(str(tmp_path / "out")) == history
    assert load_log_history(SimpleNamespace(state=SimpleNamespace(log_history=history))) is history


def test_output_dir_without_state_uses_its_latest_checkpoint(tmp_path):
    write_state(tmp_path / "checkpoint-2", vcrl_history(steps=(1, 2)))
    write_state(tmp_path / "checkpoint-10", vcrl_history(steps=(2, 4, 6, 8, 10)))
    (tmp_path / "checkpoint-99").mkdir()  # an unfinished checkpoint, no trainer_state.json
    assert curriculum_frame(tmp_path)["step"] == [2, 4, 6, 8, 10]


def test_unreadable_sources_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No trainer_state.json in .* checkpoint-N"):
        load_log_history(tmp_path)
    with pytest.raises(FileNotFoundError, match="No such file or directory"):
        load_log_history(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="no 'log_history' key"):
        load_log_history(tmp_path / "other.json")
    with pytest.raises(TypeError, match="Cannot read a log history from a int"):
        load_log_history(3)


def test_compare_runs_by_generation_cost(tmp_path):
    runs = {"vcrl": vcrl_history(steps=(1, 2)), "grpo": grpo_history(steps=(2, 4))}
    figure = compare_runs(runs, x="rollouts", groups_per_step=4, path=tmp_path / "compare.png")

    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    # VCRL generates 1.5 groups per trained group; GRPO 1, and each of its rows stands for two steps.
    assert list(lines["vcrl"].get_xdata()) == [6.0, 12.0]
    assert list(lines["grpo"].get_xdata()) == [8.0, 16.0]
    assert list(lines["grpo"].get_ydata()) == pytest.approx([0.2, 0.4])
    assert (tmp_path / "compare.png").stat().st_size > 10_000

    by_step = compare_runs(runs, metric="vcrl/kept_fraction")
    assert [line.get_label() for line in by_step.axes[0].get_lines()] == ["vcrl"]  # grpo did not log it
    assert list(by_step.axes[0].get_lines()[0].get_xdata()) == [1, 2]


def test_compare_runs_rejects_bad_arguments():
    runs = {"grpo": grpo_history()}
    with pytest.raises(ValueError, match="x='epoch' is not supported; choose one of \\['step', 'rollouts'\\]"):
        compare_runs(runs, x="epoch")
    with pytest.raises(ValueError, match="needs groups_per_step"):
        compare_runs(runs, x="rollouts")
    with pytest.raises(ValueError, match="None of the runs \\['grpo'\\] logged metric='vcrl/kappa'"):
        compare_runs(runs, metric="vcrl/kappa")
