"""VCRLConfig: defaults from the paper, validation errors naming the field, GRPOConfig / args=None drop-in paths."""

import logging
from dataclasses import fields

import pytest
from trl import GRPOConfig

from trl_vcrl import VCRLConfig, VCRLTrainer


def make(tmp_path, **kwargs):
    defaults = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4, use_cpu=True, report_to="none"
    )
    return VCRLConfig(**{**defaults, **kwargs})


def test_defaults_are_the_papers_settings(tmp_path):
    config = make(tmp_path)
    schedule = config.get_kappa_schedule()
    assert [schedule(step) for step in (0, 19, 20, 500)] == [0.3, 0.3, 0.8, 0.8]
    assert (config.replay_momentum, config.replay_limit, config.reward_range) == (0.9, 2, [0.0, 1.0])
    assert config.dynamic_sampling and config.replay


def test_every_vcrl_field_has_help():
    grpo_fields = {f.name for f in fields(GRPOConfig)}
    for f in fields(VCRLConfig):
        if f.name not in grpo_fields:
            assert len(f.metadata.get("help", "")) > 20, f.name


def test_kappa_schedule_field_gives_a_piecewise_constant_schedule(tmp_path):
    schedule = make(tmp_path, kappa_schedule=["0:0.1", "5:0.5", "10:0.9"]).get_kappa_schedule()
    assert [schedule(s) for s in (0, 4, 5, 9, 10, 99)] == [0.1, 0.1, 0.5, 0.5, 0.9, 0.9]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kappa=1.2), "kappa must lie in [0, 1]"),
        (dict(kappa=-0.1), "kappa must lie in [0, 1]"),
        (dict(kappa_warmup=1.5), "kappa_warmup must lie in [0, 1]"),
        (dict(kappa_warmup_steps=-1), "kappa_warmup_steps must be >= 0"),
        (
            dict(kappa_schedule=["0:0.3", "20:1.5"]),
            "kappa_schedule=['0:0.3', '20:1.5']: kappa must lie in [0, 1], got 1.5 at step 20",
        ),
        (dict(kappa_schedule=["0:0.3", "20:0.8", "10:0.5"]), "strictly increasing"),
        (dict(kappa_schedule=["5:0.3"]), "must start at step 0"),
        (dict(kappa_schedule=["0-0.3"]), "not of the form 'step:kappa'"),
        (dict(kappa_schedule=[]), "empty"),
        (dict(kappa_schedule=["0:0.3"], kappa=0.5), "do not also set kappa"),
        (dict(reward_range=[1.0, 1.0]), "is empty"),
        (dict(reward_range=[0.0, float("inf")]), "two finite numbers"),
        (dict(reward_range=[0.0]), "two finite numbers"),
        (
            dict(replay_bank_size=-1),
            "replay_bank_size=-1, replay_momentum=0.9, replay_limit=2: replay bank capacity must be >= 0",
        ),
        (dict(max_refill_rounds=-2), "max_refill_rounds must be >= 0"),
        (dict(replay_limit=0), "replay_limit=0: replay limit must be >= 1"),
        (dict(replay_momentum=1.5), "replay_momentum=1.5, replay_limit=2: replay momentum must lie in [0, 1]"),
        (dict(num_generations=1, per_device_train_batch_size=4), "at least 2 generations"),  # GRPOConfig's check
        (dict(per_device_train_batch_size=6, num_generations=3, steps_per_generation=1), None),
        (dict(dynamic_sampling=False), "replay=True needs dynamic_sampling=True"),
    ],
)
def test_validation_errors_name_the_field(tmp_path, kwargs, message):
    if message is None:  # a valid corner: 6 rows per process are two groups of 3
        assert make(tmp_path, **kwargs).num_generations == 3
        return
    with pytest.raises(ValueError) as error:
        make(tmp_path, **kwargs)
    assert message in str(error.value)


def test_rows_per_process_must_be_whole_groups(tmp_path, monkeypatch):
    # On 2 processes, 2 x 6 = 12 rows are whole groups of 4 globally (GRPOConfig accepts it), but not per process.
    monkeypatch.setattr(VCRLConfig, "world_size", property(lambda self: 2))
    with pytest.raises(ValueError, match=r"= 6 rows, which is not a whole number of groups of num_generations=4"):
        make(tmp_path, per_device_train_batch_size=6, num_generations=4)
    assert make(tmp_path, per_device_train_batch_size=8, num_generations=4).generation_batch_size == 16


def test_grpo_config_converted_with_vcrl_defaults(tmp_path, model, tokenizer, caplog):
    grpo_args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4, learning_rate=3e-6,
        loss_type="dr_grpo", max_completion_length=8, use_cpu=True, bf16=False, report_to="none",
    )  # fmt: skip
    from conftest import coin_reward, toy_dataset

    with caplog.at_level(logging.WARNING, logger="trl_vcrl.trainer"):
        trainer = VCRLTrainer(
            model, coin_reward, args=grpo_args, train_dataset=toy_dataset(), processing_class=tokenizer
        )
    assert isinstance(trainer.args, VCRLConfig)
    assert (trainer.args.learning_rate, trainer.args.loss_type, trainer.args.kappa) == (3e-6, "dr_grpo", 0.8)
    assert trainer.args.generation_batch_size == grpo_args.generation_batch_size
    assert "VCRLTrainer got a GRPOConfig" in caplog.text and "replay_limit=2" in caplog.text


def test_args_none_builds_default_config(model, tokenizer, tmp_path, monkeypatch):
    from conftest import coin_reward, toy_dataset

    import trl_vcrl.trainer

    # GRPOTrainer's default config asks for bf16, which a CPU machine refuses (VCRL and GRPO alike); keep the
    # default otherwise and check which config VCRLTrainer builds.
    built = []

    def cpu_default(output_dir):
        built.append(output_dir)
        return VCRLConfig(output_dir, use_cpu=True, bf16=False, report_to="none")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(trl_vcrl.trainer, "VCRLConfig", cpu_default)
    model.config._name_or_path = "org/tiny-qwen2"
    trainer = VCRLTrainer(model, coin_reward, train_dataset=toy_dataset(), processing_class=tokenizer)
    assert built == ["tiny-qwen2-VCRL"]
    assert trainer.kappa_schedule(0) == 0.3 and trainer.kappa_schedule(20) == 0.8 and trainer.args.num_generations == 8
