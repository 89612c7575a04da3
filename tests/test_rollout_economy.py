"""Efficient sampling on a synthetic multi-epoch task with known pass rates: "easy" prompts always pass, "hard" never
(both have p = 0), "coin" prompts score a hash bit of each completion (pass kappa=0.5 at G=8 with probability 0.93).

Perfect foresight would generate only coin prompts: 1/0.93 = 1.08 generated groups per trained group.
"""

import pytest
from conftest import coin_reward, toy_dataset
from test_trainer import Recorder, groups_of, logged, make_trainer

from trl_vcrl import normalized_variance

KAPPA = 0.5
SETTINGS = dict(per_device_train_batch_size=32, num_generations=8, kappa_schedule=[f"0:{KAPPA}"], max_steps=30)
EPOCH = 6  # 24 prompts, 4 groups per step


def train_and_count(model, tokenizer, base_args, **settings):
    """Train 5 epochs; return the trainer, the recorder, and the kinds of the generated groups per rollout step."""
    generated = {}

    def counting_reward(completions, kind, **kwargs):
        step = trainer._rollout_step
        generated.setdefault(step, []).extend(kind[:: SETTINGS["num_generations"]])
        return coin_reward(completions, kind)

    counting_reward.__name__ = "coin_reward"
    trainer = make_trainer(
        model, tokenizer, base_args, dataset=toy_dataset(size=24), reward=counting_reward, **SETTINGS, **settings
    )
    recorder = Recorder(trainer)
    trainer.train()
    return trainer, recorder, generated


def test_uninformative_prompts_are_skipped_after_the_first_epoch(model, tokenizer, base_args):
    trainer, recorder, generated = train_and_count(model, tokenizer, base_args)
    first_epoch = [kind for step in range(EPOCH) for kind in generated[step]]
    later = [kind for step in range(2 * EPOCH, 5 * EPOCH) for kind in generated[step]]
    assert first_epoch.count("easy") + first_epoch.count("hard") >= 12  # nothing is known yet: all are tried
    assert (later.count("easy") + later.count("hard")) / len(later) <= 0.15  # the exploration floor, not more
    trained_groups = 4 * 3 * EPOCH
    # Perfect foresight: 1.08; the paper's procedure: >= 1.5 (next test). Here 8 informative prompts serve 4 trained
    # groups a step, so refill rounds sized for one-round success leave surplus; the benchmark's 48-prompt task
    # measures 1.19 against the target of 1.3 (docs/benchmarks/rollout_economy.md).
    assert len(later) / trained_groups <= 1.4
    # Every group that reaches the loss passes kappa (decoded and re-scored), fallback excepted (none after epoch 1).
    assert sum(logged(trainer, "vcrl/groups_from_fallback")[EPOCH:]) == 0
    for batch in recorder.loss_inputs[2 * EPOCH :]:
        assert all(normalized_variance(r) >= KAPPA for r in groups_of(batch, tokenizer).values())
    assert sum(logged(trainer, "vcrl/skipped_before_rollout")) > 0
    assert sum(logged(trainer, "vcrl/prediction_accuracy")[2 * EPOCH :]) / (3 * EPOCH) >= 0.8


def test_paper_procedure_generates_every_drawn_prompt(model, tokenizer, base_args):
    """The switch restores the paper's procedure: no skipping, so uninformative prompts keep costing rollouts."""
    trainer, _, generated = train_and_count(model, tokenizer, base_args, efficient_sampling=False)
    later = [kind for step in range(2 * EPOCH, 5 * EPOCH) for kind in generated[step]]
    assert (later.count("easy") + later.count("hard")) / len(later) >= 0.4
    assert len(later) / (4 * 3 * EPOCH) >= 1.5
    assert "vcrl/skipped_before_rollout" not in trainer.state.log_history[0]


@pytest.mark.parametrize("efficient_sampling", [True, False])
def test_rollout_cost_metric_counts_every_generated_group(model, tokenizer, base_args, efficient_sampling):
    trainer, _, generated = train_and_count(model, tokenizer, base_args, efficient_sampling=efficient_sampling)
    per_step = logged(trainer, "vcrl/rollouts_per_trained_group")
    assert per_step == pytest.approx([len(generated[step]) / 4 for step in range(5 * EPOCH)])


def test_refill_rounds_take_only_prompts_predicted_to_pass(model, tokenizer, base_args):
    """Skipped prompts are explored in the first call, whose size is fixed, never in refill rounds: even with
    `explore_floor=1` (every skipped prompt explored), refill rounds after the first epoch generate no prompt known to
    fail kappa, while the first call keeps exploring them."""
    calls = {}  # rollout step -> the kinds of each generation call's groups, first call first

    def per_call_reward(completions, kind, **kwargs):
        calls.setdefault(trainer._rollout_step, []).append(kind[:: SETTINGS["num_generations"]])
        return coin_reward(completions, kind)

    per_call_reward.__name__ = "coin_reward"
    trainer = make_trainer(
        model, tokenizer, base_args, dataset=toy_dataset(size=24), reward=per_call_reward, explore_floor=1.0,
        **SETTINGS,
    )  # fmt: skip
    trainer.train()
    later = [calls[step] for step in range(2 * EPOCH, 5 * EPOCH)]
    refilled = [kind for step in later for call in step[1:] for kind in call]
    first_calls = [kind for step in later for kind in step[0]]
    assert refilled and set(refilled) == {"coin"}
    assert first_calls.count("easy") + first_calls.count("hard") >= len(first_calls) / 3


def test_bank_prompts_are_replayed_in_refill_rounds_only(model, tokenizer, base_args):
    """The first call's skipped prompts are replaced by dataset prompts, never by bank prompts: the bank is drawn only
    while refill rounds are planned (as in the paper), and it is drawn there."""
    trainer = make_trainer(model, tokenizer, base_args, dataset=toy_dataset(size=24), reward=coin_reward, **SETTINGS)
    planning, takes = [None], []
    for name in ("_screen_first_round", "_plan_next_round"):
        method = getattr(trainer, name)

        def tracked(*args, method=method, name=name, **kwargs):
            planning[0] = name
            try:
                return method(*args, **kwargs)
            finally:
                planning[0] = None

        setattr(trainer, name, tracked)
    take = trainer.replay_bank.take

    def recording_take(*args, **kwargs):
        taken = take(*args, **kwargs)
        takes.append((planning[0], taken))
        return taken

    trainer.replay_bank.take = recording_take
    trainer.train()
    assert sum(logged(trainer, "vcrl/skipped_before_rollout")) > 0  # the first call did replace prompts
    assert sum(len(taken) for where, taken in takes if where == "_plan_next_round") > 0
    assert not [taken for where, taken in takes if where != "_plan_next_round" and taken]
