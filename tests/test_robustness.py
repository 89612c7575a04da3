"""Robustness of VCRLTrainer: duplicate prompts within a step, streaming datasets, KL-safe padding, checkpoints that
survive odd rows and crashes, float tolerance, the schedule unit, example identity, resume with changed bank settings,
the completions table, faulty reward functions and degenerate datasets.

Rewards are deterministic where a test needs to know which groups pass: `mixed_reward` gives "mixed" prompts the
rewards 0, 1, 0, 1 within each group (p = 1 for G = 4) and every other prompt 0 (p = 0).
"""

import datetime
import decimal
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import coin_reward, toy_dataset
from datasets import Dataset
from test_trainer import Recorder, decoded_rows, groups_of, logged, make_trainer, row_rewards
from trl import GRPOConfig, GRPOTrainer

from trl_vcrl import ReplayBank, VCRLConfig, VCRLTrainer, normalized_variance
from trl_vcrl.batch import merge_rows
from trl_vcrl.testing import build_tiny_model
from trl_vcrl.trainer import STATE_FILE


def mixed_reward(completions, kind, **kwargs):
    return [float(i % 2) if k == "mixed" else 0.0 for i, k in enumerate(kind)]


def rows_of(*kinds, **columns):
    """A dataset with one row per kind, prompts named after their position and kind."""
    rows = [{"prompt": f"Question {i} ({kind})", "kind": kind} for i, kind in enumerate(kinds)]
    for name, values in columns.items():
        for row, value in zip(rows, values):
            row[name] = value
    return Dataset.from_list(rows)


class GenerationCalls:
    """The prompt of every group each generation call of GRPOTrainer received (VCRL calls it once per round)."""

    def __init__(self, monkeypatch, group_size):
        self.calls = []
        generate = GRPOTrainer._generate_and_score_completions

        calls = self.calls

        def record(self, inputs):  # GRPOTrainer's own signature, which VCRL checks at construction
            if self.model.training:
                calls.append([row["prompt"] for row in inputs[::group_size]])
            return generate(self, inputs)

        monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", record)


# ---------------------------------------------------------------- 1. no prompt twice in one step
def test_bank_prompt_is_not_also_drawn_from_the_dataset(model, tokenizer, base_args, monkeypatch):
    """Step 0 banks B (two identical rows, one example); step 1's fresh prompts A and C both fail, the refill round
    takes B from the bank and must draw its dataset prompt from the rest (D), not B again. Generating B twice would
    also re-add it to the bank after its last replay (replay_limit=1), resetting its replay count."""
    dataset = rows_of("mixed", "mixed", "hard", "hard", "mixed")  # B, B, A, C, D in the dataloader's order
    dataset = dataset.map(lambda row, i: {"prompt": "Question B (mixed)"} if i < 2 else {}, with_indices=True)
    calls = GenerationCalls(monkeypatch, group_size=4)
    trainer = make_trainer(
        model, tokenizer, base_args, dataset=dataset, reward=mixed_reward, kappa_schedule=["0:0.5"],
        max_refill_rounds=1, replay_limit=1, shuffle_dataset=False, max_steps=2,
    )  # fmt: skip
    trainer.train()
    step0, step1_fresh, step1_refill = calls.calls
    assert step0 == ["Question B (mixed)"] * 2 and step1_fresh == ["Question 2 (hard)", "Question 3 (hard)"]
    assert step1_refill == ["Question B (mixed)", "Question 4 (mixed)"]
    step1 = step1_fresh + step1_refill
    assert len(set(step1)) == len(step1)
    # B was replayed its one time and left; D passed and entered the bank.
    assert [entry.row["prompt"] for entry in trainer.replay_bank.entries.values()] == ["Question 4 (mixed)"]
    assert logged(trainer, "vcrl/groups_from_bank") == [0.0, 1.0]


# ---------------------------------------------------------------- 2. iterable datasets
def test_iterable_dataset_refills_from_the_stream(model, tokenizer, base_args):
    """A streaming dataset with VCRL's refill: dropped groups are replaced by later stream prompts, all pass kappa."""
    dataset = toy_dataset(kinds=("coin", "coin", "easy", "hard"), size=96).to_iterable_dataset()
    trainer = make_trainer(
        model, tokenizer, base_args, dataset=dataset, kappa_schedule=["0:0.5"], max_refill_rounds=4, max_steps=4
    )
    recorder = Recorder(trainer)
    trainer.train()
    assert sum(logged(trainer, "vcrl/groups_from_refill")) > 0
    assert logged(trainer, "vcrl/groups_from_fallback") == [0.0] * 4
    for inputs in recorder.loss_inputs:
        groups = groups_of(inputs, tokenizer)
        assert len(groups) == 2 and all(normalized_variance(rewards) >= 0.5 for rewards in groups.values())
    assert trainer.refill_rows.state_dict()["position"] > 0


def test_iterable_dataset_resume_restores_the_stream_position(model, tokenizer, base_args, tmp_path):
    dataset = toy_dataset(kinds=("coin", "hard"), size=96).to_iterable_dataset()
    settings = dict(kappa_schedule=["0:0.5"], max_refill_rounds=2, max_steps=4, save_strategy="steps", save_steps=2)
    full = make_trainer(
        model, tokenizer, {**base_args, "output_dir": str(tmp_path / "full")}, dataset=dataset, **settings
    )
    full.train()
    with open(tmp_path / "full" / "checkpoint-2" / STATE_FILE) as f:
        assert json.load(f)["refill_rows"]["position"] > 0
    resumed = make_trainer(
        build_tiny_model(tokenizer, seed=0), tokenizer, {**base_args, "output_dir": str(tmp_path / "resumed")},
        dataset=dataset, **settings,
    )  # fmt: skip
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    assert resumed.curriculum_state_dict() == full.curriculum_state_dict()
    for metric in ("vcrl/groups_from_refill", "vcrl/bank_size", "loss"):
        assert logged(resumed, metric) == logged(full, metric)


def test_trl_iterable_dataset_tests_with_vcrl_defaults(model, tokenizer, tmp_path):
    """TRL's `test_train_with_iterable_dataset` and `test_iterable_dataset_forces_num_workers_zero` for GRPOTrainer,
    run with VCRLTrainer and a plain GRPOConfig (VCRL's defaults, refill on); a local stream replaces the Hub set."""
    args = GRPOConfig(
        output_dir=str(tmp_path), learning_rate=0.1, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=8, max_steps=3, dataloader_num_workers=4, report_to="none", use_cpu=True, bf16=False,
    )  # fmt: skip
    before = [p.detach().clone() for p in model.parameters()]
    trainer = VCRLTrainer(
        model, coin_reward, args=args, train_dataset=toy_dataset().to_iterable_dataset(), processing_class=tokenizer
    )
    assert trainer.args.dataloader_num_workers == 0
    trainer.train()
    assert trainer.state.log_history[-1]["train_loss"] is not None
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert trainer.args.max_refill_rounds > 0 and logged(trainer, "vcrl/refill_rounds")


def test_dynamic_sampling_without_refill_is_rejected(tmp_path):
    """With the paper's procedure, max_refill_rounds=0 would make VCRL GRPO's batch reordered, silently. With
    efficient sampling the bank and the screen still feed the first call, so it is allowed."""
    settings = dict(output_dir=str(tmp_path), max_refill_rounds=0, per_device_train_batch_size=8, num_generations=4,
                    use_cpu=True, bf16=False)  # fmt: skip
    with pytest.raises(ValueError, match="max_refill_rounds=0 with dynamic_sampling=True"):
        VCRLConfig(**settings, efficient_sampling=False)
    assert VCRLConfig(**settings).max_refill_rounds == 0


# ---------------------------------------------------------------- 5. float tolerance on the reward range
def test_ten_rewards_weighted_a_tenth_sum_to_the_range_end(model, tokenizer, base_args):
    """Ten float32 rewards of 1.0 weighted 0.1 sum to 1.0000001: the top of the range, not outside it."""

    def one(completions, **kwargs):
        return [1.0] * len(completions)

    args = VCRLConfig(**{**base_args, "max_steps": 1}, reward_weights=[0.1] * 10, max_refill_rounds=1)
    trainer = VCRLTrainer(model, [one] * 10, args=args, train_dataset=toy_dataset(), processing_class=tokenizer)
    trainer.train()
    assert logged(trainer, "vcrl/p_mean") == [0.0]  # every completion scored exactly the top: constant groups
    assert logged(trainer, "reward")[0] == pytest.approx(1.0)


def test_range_end_float32_cannot_represent_takes_the_count_path(model, tokenizer, base_args):
    """reward_range [0, 0.1] with float32 rewards 0.1: a binary group's p is exactly its closed form 4k(n-k)/n²."""
    tenth = float(np.float32(0.1))
    assert tenth != 0.1
    assert normalized_variance([tenth, 0.0, tenth, 0.0], (0.0, 0.1)) == 1.0
    assert normalized_variance([tenth, 0.0, 0.0, 0.0], (0.0, 0.1)) == 0.75

    def tenth_reward(completions, kind, **kwargs):
        return [r / 10 for r in mixed_reward(completions, kind)]

    trainer = make_trainer(
        model, tokenizer, base_args, dataset=rows_of(*["mixed"] * 8), reward=tenth_reward, reward_range=[0.0, 0.1],
        kappa_schedule=["0:1.0"], max_steps=2,
    )  # fmt: skip
    trainer.train()
    assert logged(trainer, "vcrl/p_mean") == [1.0, 1.0]
    assert logged(trainer, "vcrl/kept_fraction") == [1.0, 1.0]  # p = 1 passes kappa = 1: not one ulp below


# ---------------------------------------------------------------- 6. the kappa schedule counts rollout steps
def test_kappa_schedule_counts_generation_batches(model, tokenizer, base_args):
    """num_iterations=2: each generation batch trains two optimizer steps; the schedule's step 2 is the 3rd batch."""
    trainer = make_trainer(
        model, tokenizer, base_args, num_iterations=2, kappa_schedule=["0:0.3", "2:0.8"], max_steps=6,
        max_refill_rounds=1,
    )  # fmt: skip
    trainer.train()
    kappas = [(entry["step"], entry["vcrl/kappa"]) for entry in trainer.state.log_history if "vcrl/kappa" in entry]
    assert kappas == [(1, 0.3), (3, 0.3), (5, 0.8)]
    assert trainer.curriculum_state_dict()["rollout_step"] == 3


# ---------------------------------------------------------------- 10. the completions table logs the trained rows
def test_completions_table_holds_the_trained_rows(model, tokenizer, base_args):
    """After each step TRL's completions table holds exactly the trained rows, in batch order, with the advantages
    they were trained with and the source of each group; rows of refill rounds that were not trained are gone."""
    trainer = make_trainer(
        model, tokenizer, base_args, dataset=toy_dataset(kinds=("coin", "coin", "easy", "hard"), size=96),
        kappa_schedule=["0:0.5"], max_refill_rounds=3, max_steps=3,
    )  # fmt: skip
    recorder = Recorder(trainer)
    tables = []
    log_curriculum = trainer._log_curriculum

    def log_and_copy_table(*args):
        log_curriculum(*args)
        logs = trainer._logs
        tables.append(
            {
                "prompt": list(logs["prompt"]),
                "advantages": list(logs["advantages"]),
                "reward": list(logs["rewards"]["coin_reward"]),
                "source": list(logs["extra"]["vcrl_source"]),
            }
        )

    trainer._log_curriculum = log_and_copy_table
    trainer.train()
    assert len(tables) == len(recorder.generated) == 3
    for table, batch in zip(tables, recorder.generated):
        prompts, rewards = row_rewards(batch, tokenizer)
        assert table["prompt"] == prompts and table["reward"] == rewards
        assert table["advantages"] == batch["advantages"].tolist()
        sources = table["source"]
        assert len(sources) == 8 and all(len(set(sources[i : i + 4])) == 1 for i in (0, 4))
        assert set(sources) <= {"fresh", "bank", "refill", "fallback"}
    assert any(source != "fresh" for table in tables for source in table["source"])


# ---------------------------------------------------------------- 11. both switches off accepts what GRPO accepts
def test_grpo_mode_accepts_what_grpo_config_accepts(tmp_path, monkeypatch):
    """Two processes, 2 rows each, G=4: a whole group per generation batch globally, half a group per process."""
    for config_cls in (GRPOConfig, VCRLConfig):
        monkeypatch.setattr(config_cls, "world_size", property(lambda self: 2))
    settings = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=4, use_cpu=True, bf16=False
    )
    GRPOConfig(**settings)
    config = VCRLConfig(**settings, dynamic_sampling=False, replay=False)
    assert config.generation_batch_size == 4
    with pytest.raises(ValueError, match="VCRL keeps or drops whole groups per process"):
        VCRLConfig(**settings)


# ---------------------------------------------------------------- 3. KL-safe padding of merged rows
def kl_term(ref_per_token_logps, per_token_logps):
    """TRL 1.16's per-token KL estimator (GRPOTrainer._compute_loss), computed at every position, masked afterwards."""
    return torch.exp(ref_per_token_logps - per_token_logps) - (ref_per_token_logps - per_token_logps) - 1


def completion_piece(rows, width, content, logp=-1.0):
    """A training-batch slice of `rows` rows, `width` completion columns of which the first `content` are real."""
    mask = torch.zeros(rows, width, dtype=torch.long)
    mask[:, :content] = 1
    return {
        "prompt_ids": torch.full((rows, 2), 5), "prompt_mask": torch.ones(rows, 2, dtype=torch.long),
        "completion_ids": torch.full((rows, width), 7) * mask, "completion_mask": mask,
        "old_per_token_logps": torch.full((rows, width), logp), "ref_per_token_logps": torch.full((rows, width), logp),
        "importance_sampling_ratio": torch.ones(rows, width),
    }  # fmt: skip


def test_merged_padding_keeps_the_kl_term_finite_and_masked():
    """Columns a narrow round never had are padding after the merge. With a policy whose pad-token log-prob is -200
    there, the masked KL sum must be finite and equal the sum over real tokens (ref padded with 0 gave inf * 0)."""
    narrow, wide = completion_piece(4, 2, 2), completion_piece(4, 5, 5)
    merged = merge_rows([narrow, wide], 0, None, False)
    mask = merged["completion_mask"]
    assert mask.shape == (8, 5) and mask[:4, 2:].sum() == 0
    per_token_logps = torch.where(mask.bool(), torch.tensor(-1.5), torch.tensor(-200.0))
    kl = kl_term(merged["ref_per_token_logps"], per_token_logps)
    assert torch.isfinite(kl).all()
    masked = (kl * mask).sum()
    expected = kl_term(torch.tensor(-1.0), torch.tensor(-1.5)) * mask.sum()
    torch.testing.assert_close(masked, expected)


# ---------------------------------------------------------------- 8. importance-ratio level from the configuration
def test_token_level_ratio_of_width_one_is_padded():
    """A token-level ratio from a round whose longest completion is one token, merged with a wider round."""
    merged = merge_rows([completion_piece(4, 1, 1), completion_piece(4, 3, 3)], 0, None, False)
    ratio = merged["importance_sampling_ratio"]
    assert ratio.shape == (8, 3) and torch.all(ratio[:4, 1:] == 1.0)
    pieces = [completion_piece(4, 1, 1), completion_piece(4, 3, 3)]
    for piece, value in zip(pieces, (0.5, 2.0)):
        piece["importance_sampling_ratio"] = torch.full((4, 1), value)  # sequence level: one ratio per row
    ratio = merge_rows(pieces, 0, None, True)["importance_sampling_ratio"]
    assert ratio.shape == (8, 1) and ratio.view(-1).tolist() == [0.5] * 4 + [2.0] * 4


# ---------------------------------------------------------------- 4. checkpoint state
def assert_same_values(a, b):
    """Equal and of the same type, recursively (numpy arrays: same dtype and items)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_values(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_values(x, y)
    else:
        assert a == b


def typed_dataset(size=16):
    """Columns `datasets` gives back as datetime, date, bytes and Decimal values."""
    import pyarrow as pa

    kinds = ["mixed", "hard"] * (size // 2)
    table = pa.table({
        "prompt": [f"Question {i} ({kind})" for i, kind in enumerate(kinds)], "kind": kinds,
        "when": pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5, i) for i in range(size)], pa.timestamp("us")),
        "day": pa.array([datetime.date(2024, 1, 1 + i) for i in range(size)], pa.date32()),
        "blob": pa.array([bytes([i, 255]) for i in range(size)], pa.binary()),
        "amount": pa.array([decimal.Decimal(f"{i}.25") for i in range(size)], pa.decimal128(10, 2)),
    })  # fmt: skip
    return Dataset(table)


def test_any_row_round_trips_through_a_checkpoint(model, tokenizer, base_args, tmp_path):
    """Dataset rows with datetime, date, bytes and Decimal values, and rows holding numpy arrays, numpy scalars and
    tuples (a custom map-style dataset can yield those), come back from a checkpoint equal and of the same types."""
    settings = dict(kappa_schedule=["0:0.0"], max_steps=1, save_strategy="steps", save_steps=1)
    full = make_trainer(model, tokenizer, base_args, dataset=typed_dataset(), reward=mixed_reward, **settings)
    odd_row = {
        "prompt": "Question odd (mixed)", "kind": "mixed", "vector": np.arange(3, dtype=np.int16),
        "score": np.float32(0.25), "pair": (1, ("a", b"b")), "nested": [{"t": (np.int64(4),)}],
    }  # fmt: skip
    full.replay_bank.add("odd row", odd_row, 0.0)  # kappa 0: nothing is dropped, so nothing is taken from the bank
    full.train()
    banked = {key: entry.row for key, entry in full.replay_bank.entries.items()}
    assert len(banked) == 3 and type(banked["odd row"]["vector"]) is np.ndarray
    assert {type(row.get("when")) for key, row in banked.items() if key != "odd row"} == {datetime.datetime}

    resumed = make_trainer(
        build_tiny_model(tokenizer, seed=0), tokenizer, {**base_args, "output_dir": str(tmp_path / "resumed")},
        dataset=typed_dataset(), reward=mixed_reward, **settings,
    )  # fmt: skip
    loaded = []
    load = resumed.load_curriculum_state_dict

    def load_and_copy(state):  # the bank as loaded, before the resumed run trains on
        load(state)
        loaded.append({key: entry.row for key, entry in resumed.replay_bank.entries.items()})

    resumed.load_curriculum_state_dict = load_and_copy
    resumed.train(resume_from_checkpoint=os.path.join(base_args["output_dir"], "checkpoint-1"))
    assert len(loaded) == 1
    assert_same_values(loaded[0], banked)


def test_state_file_is_written_atomically(model, tokenizer, base_args, monkeypatch):
    """The state goes to a temporary file, complete, then is renamed: a reader never sees a partial file."""
    renames = []
    replace = os.replace

    def recording_replace(source, destination):
        if str(destination).endswith(STATE_FILE):
            with open(source) as f:
                renames.append((source, destination, os.path.exists(destination), json.load(f)["rollout_step"]))
        return replace(source, destination)

    monkeypatch.setattr(os, "replace", recording_replace)
    trainer = make_trainer(model, tokenizer, base_args, max_steps=2, save_strategy="steps", save_steps=1)
    trainer.train()
    checkpoint = os.path.join(base_args["output_dir"], "checkpoint-{}", STATE_FILE)
    assert renames == [(checkpoint.format(s) + ".tmp", checkpoint.format(s), False, s) for s in (1, 2)]
    assert not any(name.endswith(".tmp") for name in os.listdir(os.path.dirname(checkpoint.format(2))))


@pytest.mark.parametrize("saving_process", [True, False], ids=["rank0", "other-rank"])
def test_unstorable_row_fails_on_every_process(model, tokenizer, base_args, monkeypatch, saving_process):
    """A row value no checkpoint can hold raises a TypeError naming it, also on processes that do not write the file
    (imitated by `should_save=False`), so no rank is left waiting in the save's collectives."""
    monkeypatch.setattr(VCRLConfig, "should_save", property(lambda self: saving_process))
    trainer = make_trainer(
        model, tokenizer, base_args, kappa_schedule=["0:0.0"], max_steps=1, save_strategy="steps", save_steps=1
    )
    trainer.replay_bank.add("tagged", {"prompt": "Question tagged (easy)", "kind": "easy", "tags": {"a"}}, 0.0)
    with pytest.raises(TypeError, match=r"\['tags'\] is a builtins.set, which VCRL cannot store in a checkpoint"):
        trainer.train()


def test_resume_true_takes_the_last_complete_checkpoint(model, tokenizer, base_args, tmp_path):
    """A newer checkpoint folder without trainer_state.json (a run killed while saving it) is skipped, and its
    partial state files are never read: the run resumes from the complete one and continues identically."""
    settings = dict(kappa_schedule=["0:0.5"], max_refill_rounds=2, max_steps=3, save_strategy="steps", save_steps=1)
    full = make_trainer(model, tokenizer, base_args, dataset=toy_dataset(kinds=("coin", "hard"), size=96), **settings)
    full.train()
    killed = os.path.join(base_args["output_dir"], "checkpoint-3")
    os.remove(os.path.join(killed, "trainer_state.json"))
    for name in (STATE_FILE, STATE_FILE + ".tmp"):
        with open(os.path.join(killed, name), "w") as f:
            f.write('{"replay_bank": {"entries": [["')  # cut off mid-write
    resumed = make_trainer(
        build_tiny_model(tokenizer, seed=0), tokenizer, base_args,
        dataset=toy_dataset(kinds=("coin", "hard"), size=96), **settings,
    )  # fmt: skip
    resumed.train(resume_from_checkpoint=True)
    for metric in ("vcrl/bank_size", "vcrl/groups_from_bank", "vcrl/kappa", "loss"):
        assert logged(resumed, metric) == logged(full, metric)
    assert resumed.curriculum_state_dict() == full.curriculum_state_dict()


def test_resume_true_without_a_complete_checkpoint_is_an_error(model, tokenizer, base_args):
    trainer = make_trainer(model, tokenizer, base_args)
    os.makedirs(os.path.join(base_args["output_dir"], "checkpoint-1"))
    with pytest.raises(ValueError, match="No complete checkpoint in"):
        trainer.train(resume_from_checkpoint=True)


# ---------------------------------------------------------------- 7. a training example is the whole row
def test_rows_sharing_a_prompt_are_distinct_bank_entries(model, tokenizer, base_args):
    """Two rows with one prompt and different answers: two bank entries, each replayed with its own answer."""
    seen = []

    def answer_reward(completions, kind, answer, **kwargs):
        seen.append(list(answer[::4]))
        return mixed_reward(completions, kind)

    dataset = rows_of("mixed", "mixed", "hard", "hard", answer=["1", "2", "3", "4"])
    dataset = dataset.map(lambda row, i: {"prompt": "Same question (mixed)"} if i < 2 else {}, with_indices=True)
    trainer = make_trainer(
        model, tokenizer, base_args, dataset=dataset, reward=answer_reward, kappa_schedule=["0:0.5"],
        max_refill_rounds=1, shuffle_dataset=False, max_steps=2,
    )  # fmt: skip
    trainer.train()
    assert seen[:2] == [["1", "2"], ["3", "4"]]  # step 0 banks both rows; step 1's fresh rows fail
    assert sorted(seen[2]) == ["1", "2"]  # the refill round replays both, each with its own answer
    assert logged(trainer, "vcrl/groups_from_bank") == [0.0, 2.0]


def test_environment_without_a_dataset_is_a_clear_error(model, tokenizer, tmp_path):
    class Environment:
        def reset(self, **kwargs):
            return ""

    args = VCRLConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4, use_cpu=True,
                      bf16=False, report_to="none")  # fmt: skip
    with pytest.raises(ValueError, match="with environment_factory and no train_dataset every row is an empty"):
        VCRLTrainer(model, coin_reward, args=args, processing_class=tokenizer, environment_factory=Environment)


# ---------------------------------------------------------------- 9. resume with changed bank settings
@pytest.fixture(scope="module")
def banked_checkpoint(tokenizer, tmp_path_factory):
    """A checkpoint after 4 steps whose bank holds replayed and never-replayed prompts, and those entries as
    `(priority, tiebreak, replays)`."""
    out = tmp_path_factory.mktemp("banked")
    args = VCRLConfig(
        output_dir=str(out), per_device_train_batch_size=8, num_generations=4, max_completion_length=8, max_steps=4,
        learning_rate=1e-3, logging_steps=1, save_strategy="steps", save_steps=4, report_to="none", use_cpu=True,
        bf16=False, seed=0, beta=0.0, disable_tqdm=True, kappa_schedule=["0:0.5"], max_refill_rounds=2,
    )  # fmt: skip
    trainer = VCRLTrainer(
        build_tiny_model(tokenizer, seed=0), coin_reward, args=args,
        train_dataset=toy_dataset(kinds=("coin", "coin", "hard"), size=96), processing_class=tokenizer,
    )  # fmt: skip
    trainer.train()
    entries = [(e.priority, e.tiebreak, e.replays) for e in trainer.replay_bank.entries.values()]
    assert {replays > 0 for _, _, replays in entries} == {True, False}
    return str(out / "checkpoint-4"), entries


def resume_with(checkpoint, tokenizer, base_args, caplog, max_steps=4, **settings):
    """Resume `checkpoint` under `settings`; returns the trainer and its bank entries right after loading."""
    trainer = make_trainer(
        build_tiny_model(tokenizer, seed=0), tokenizer, base_args, dataset=toy_dataset(kinds=("coin", "coin", "hard")),
        kappa_schedule=["0:0.5"], max_refill_rounds=2, max_steps=max_steps, **settings,
    )  # fmt: skip
    loaded = []
    load = trainer.load_curriculum_state_dict

    def load_and_copy(state):
        load(state)
        loaded.append(sorted((e.priority, e.tiebreak, e.replays) for e in trainer.replay_bank.entries.values()))

    trainer.load_curriculum_state_dict = load_and_copy
    with caplog.at_level(logging.WARNING, logger="trl_vcrl.trainer"):
        trainer.train(resume_from_checkpoint=checkpoint)
    assert len(loaded) == 1
    return trainer, loaded[0]


def test_resume_with_a_smaller_bank_evicts_down_to_capacity(banked_checkpoint, tokenizer, base_args, caplog):
    checkpoint, saved = banked_checkpoint
    _, entries = resume_with(checkpoint, tokenizer, base_args, caplog, replay_bank_size=len(saved) - 1)
    assert entries == sorted(saved)[1:]  # the lowest (priority, tiebreak) left
    assert f"0 entries past the replay limit and 1 over capacity left it; {len(saved) - 1} remain." in caplog.text


def test_resume_with_replay_off_empties_the_bank(banked_checkpoint, tokenizer, base_args, caplog):
    checkpoint, saved = banked_checkpoint
    trainer, entries = resume_with(checkpoint, tokenizer, base_args, caplog, max_steps=6, replay=False)
    assert entries == []
    assert f"{len(saved)} over capacity left it; 0 remain." in caplog.text
    assert logged(trainer, "vcrl/groups_from_bank")[4:] == [0.0, 0.0]  # nothing replayed after the resume
    assert len(trainer.replay_bank) == 0


def test_resume_with_a_smaller_replay_limit_drops_spent_entries(banked_checkpoint, tokenizer, base_args, caplog):
    checkpoint, saved = banked_checkpoint
    _, entries = resume_with(checkpoint, tokenizer, base_args, caplog, replay_limit=1)
    unreplayed = sorted(entry for entry in saved if entry[2] == 0)
    assert entries == unreplayed
    spent = len(saved) - len(unreplayed)
    assert f"{spent} entries past the replay limit and 0 over capacity left it; {len(unreplayed)} remain." in (
        caplog.text
    )


# ---------------------------------------------------------------- reward function faults
def failing_reward(fault):
    def reward(completions, kind, **kwargs):
        if fault == "raises":
            raise ValueError("verifier crashed")
        if fault == "wrong count":
            return [1.0] * (len(completions) - 1)
        if fault == "not a number":
            return ["1"] * len(completions)
        return [2.0 if i == 5 else 1.0 for i in range(len(completions))]  # out of range, completion 5 (group 1)

    reward.__name__ = "faulty"
    return reward


@pytest.mark.parametrize(
    "fault, message",
    [
        ("raises", r"Process 0 at step 0: reward function 'faulty' failed: ValueError: verifier crashed\. Training "
                   r"stops on all 1 process\(es\)\."),
        ("wrong count", r"Process 0 at step 0: reward function 'faulty' failed: ValueError: returned 7 rewards for 8 "
                        r"completions \(one per completion\)"),
        ("not a number", r"Process 0 at step 0: reward function 'faulty' failed: ValueError: returned '1' for "
                         r"completion 0; a reward is a number or None"),
        ("out of range", r"Combined reward 2 of completion 5 \(group 1\) at step 0 is outside reward_range=\[0.0, "
                         r"1.0\] \(faulty=2 x weight 1\)"),
    ],
)  # fmt: skip
def test_reward_function_fault_is_a_clear_error(model, tokenizer, base_args, fault, message):
    trainer = make_trainer(model, tokenizer, base_args, reward=failing_reward(fault))
    error = ValueError if fault == "out of range" else RuntimeError
    with pytest.raises(error, match=message):
        trainer.train()


@pytest.mark.parametrize("container", ["numpy", "torch"])
def test_rewards_as_arrays_are_accepted_as_by_trl(model, tokenizer, base_args, container):
    """TRL takes any sized iterable of numbers (a numpy float32 array, a tensor); the fault guard must too."""

    def array_reward(completions, kind, **kwargs):
        rewards = mixed_reward(completions, kind)
        return np.array(rewards, dtype=np.float32) if container == "numpy" else torch.tensor(rewards)

    trainer = make_trainer(model, tokenizer, base_args, reward=array_reward, max_steps=2)
    trainer.train()
    assert len(logged(trainer, "loss")) == 2


@pytest.mark.parametrize("missing", [None, math.nan], ids=["None", "NaN"])
def test_unscorable_group_is_dropped_and_training_continues(model, tokenizer, base_args, missing):
    """A reward function that scores no completion of a group (None or NaN): p = 0, the group is replaced."""

    def partial_reward(completions, kind, **kwargs):
        return [missing if k == "unscorable" else r for k, r in zip(kind, mixed_reward(completions, kind))]

    trainer = make_trainer(
        model, tokenizer, base_args, dataset=rows_of(*["unscorable", "mixed"] * 8), reward=partial_reward,
        kappa_schedule=["0:0.5"], max_refill_rounds=4, max_steps=3, shuffle_dataset=False,
    )  # fmt: skip
    recorder = Recorder(trainer)
    trainer.train()
    assert logged(trainer, "vcrl/p_hist/0.0-0.2") == [0.5, 0.5, 0.5]  # the unscorable half of every fresh batch
    assert logged(trainer, "vcrl/groups_from_fallback") == [0.0] * 3
    assert all(math.isfinite(loss) for loss in logged(trainer, "loss")) and len(logged(trainer, "loss")) == 3
    for inputs in recorder.loss_inputs:
        prompts = [prompt for prompt, _ in decoded_rows(inputs, tokenizer)]
        assert len(prompts) == 8 and not any("unscorable" in prompt for prompt in prompts)


# ---------------------------------------------------------------- data faults
def test_dataset_smaller_than_one_batch_is_a_clear_error(model, tokenizer, base_args):
    """One prompt for a batch of two groups: TRL's sampler yields no whole batch, so GRPOTrainer trains no step
    (transformers only warns "not a single sample in your epoch_iterator"); VCRLTrainer says so when it is built."""
    grpo = GRPOTrainer(
        build_tiny_model(tokenizer, seed=0), mixed_reward, args=GRPOConfig(**base_args),
        train_dataset=rows_of("mixed"), processing_class=tokenizer,
    )  # fmt: skip
    grpo.train()
    assert grpo.state.global_step == 0
    with pytest.raises(ValueError, match=r"train_dataset has 1 prompt\(s\), fewer than the 2 one generation batch"):
        make_trainer(model, tokenizer, base_args, dataset=rows_of("mixed"), reward=mixed_reward)


def test_every_prompt_identical(model, tokenizer, base_args):
    """16 copies of one row are one training example: one bank entry; refill repeats it rather than failing."""
    dataset = Dataset.from_list([{"prompt": "Question (coin)", "kind": "coin"}] * 16)
    trainer = make_trainer(
        model, tokenizer, base_args, dataset=dataset, kappa_schedule=["0:0.5"], max_refill_rounds=2, max_steps=4
    )
    recorder = Recorder(trainer)
    trainer.train()
    assert [len(inputs["prompt_ids"]) for inputs in recorder.loss_inputs] == [8] * 4
    assert len(trainer.replay_bank) <= 1 and max(logged(trainer, "vcrl/bank_size")) == 1.0
    assert all(math.isfinite(loss) for loss in logged(trainer, "loss"))


def test_no_passing_prompt_for_fifty_steps(model, tokenizer, base_args):
    """Every prompt always fails: the best dropped groups fill the batch every step, with exactly one warning."""
    trainer = make_trainer(
        model, tokenizer, {**base_args, "max_completion_length": 2}, dataset=rows_of("hard", "easy"),
        reward=coin_reward, per_device_train_batch_size=4, num_generations=2, max_refill_rounds=1, max_steps=50,
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert len([w for w in caught if "kept to fill the batch" in str(w.message)]) == 1
    assert logged(trainer, "vcrl/groups_from_fallback") == [2.0] * 50
    assert logged(trainer, "vcrl/kept_fraction") == [0.0] * 50
    assert logged(trainer, "vcrl/bank_size") == [0.0] * 50
    assert trainer.curriculum_state_dict()["warned_fallback"] is True


def test_bank_load_applies_its_own_settings():
    saved = ReplayBank(capacity=4, replay_limit=3, seed=0)
    for i, key in enumerate("abcd"):
        saved.add(key, {"prompt": key}, 0.1 * (i + 1))
    assert [key for key, _ in saved.take(1)] == ["d"]
    bank = ReplayBank(capacity=2, replay_limit=1)
    assert bank.load_state_dict(saved.state_dict()) == {"past_replay_limit": 1, "over_capacity": 1}
    assert sorted(bank.entries) == ["b", "c"]
    assert [key for key, _ in bank.take(2)] == ["c", "b"]


# ---------------------------------------------------------------- crashes and multi-process faults (subprocesses)
WORKER = Path(__file__).with_name("fault_worker.py")


def run_worker(command, out, timeout=300):
    """Run a fault worker in its own process group; a run past `timeout` (a hang) is killed and fails the test."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(WORKER.parent.parent)}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{' '.join(map(str, command))} still running after {timeout} s: a hang")
    return process.returncode, output


@pytest.mark.slow
def test_killed_while_saving_resumes_from_the_last_complete_checkpoint(tmp_path):
    """SIGKILL while checkpoint 3 is being saved; a fresh process resumes (resume_from_checkpoint=True) from
    checkpoint 2 and logs exactly what an uninterrupted run logs."""
    for mode in ("full", "kill", "resume"):
        returncode, output = run_worker([sys.executable, str(WORKER), str(tmp_path), mode], tmp_path)
        assert returncode == (-signal.SIGKILL if mode == "kill" else 0), output[-3000:]
        if mode == "kill":
            killed = tmp_path / "run" / "checkpoint-3"
            assert (killed / STATE_FILE).exists() and not (killed / "trainer_state.json").exists()
    full, resumed = (json.loads((tmp_path / f"{mode}.json").read_text()) for mode in ("full", "resume"))
    metrics = ("loss", "vcrl/kappa", "vcrl/bank_size", "vcrl/groups_from_bank", "vcrl/groups_from_refill",
               "vcrl/p_mean", "vcrl/rollouts_per_trained_group")  # fmt: skip
    steps = [{name: entry[name] for name in metrics} for entry in full if "loss" in entry]
    assert len(steps) == 4 and sum(step["vcrl/groups_from_bank"] for step in steps[2:]) > 0
    assert [{name: entry[name] for name in metrics} for entry in resumed if "loss" in entry] == steps


@pytest.mark.slow
def test_reward_error_on_one_rank_stops_both(tmp_path):
    """Two processes (torchrun, gloo on CPU); only rank 1's reward function raises. Both ranks stop at the same step
    with the error naming rank 1, and the run ends with an error instead of hanging in the reward gather."""
    with socket.socket() as probe:  # torchrun's --master_port 0 does not pick a free port: the ranks never meet
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
               str(WORKER), str(tmp_path), "reward-error"]  # fmt: skip
    returncode, output = run_worker(command, tmp_path, timeout=240)
    assert returncode != 0
    for rank in (0, 1):
        message = (tmp_path / f"rank{rank}.txt").read_text()
        assert message.startswith("Process 1 at step 0: reward function 'rank_one_fails' failed: ValueError: verifier "
                                  "crashed on rank 1. Training stops on all 2 process(es)."), message  # fmt: skip
