"""VCRLTrainer end to end on a tiny local model: the batch that reaches the loss, the bank, checkpoints, TRL parity.

Rewards come from `coin_reward` (conftest): "easy" prompts always score 1, "hard" 0, "coin" a hash bit of the sampled
completion. Tests recompute each trained row's reward from its decoded prompt and completion, so they check the rows
the loss really sees, not the trainer's own metrics.
"""

import json
import math
import os
import re
import warnings
from collections import defaultdict

import pytest
import torch
from conftest import coin_reward, toy_dataset
from peft import LoraConfig
from trl import GRPOConfig, GRPOTrainer

from trl_vcrl import VCRLConfig, VCRLTrainer, normalized_variance
from trl_vcrl.batch import grpo_advantages
from trl_vcrl.testing import build_tiny_model
from trl_vcrl.trainer import STATE_FILE


class Recorder:
    """Records the generation batches VCRL returns and the micro-batches `compute_loss` receives."""

    def __init__(self, trainer):
        self.generated, self.loss_inputs = [], []
        generate, compute_loss = trainer._generate_and_score_completions, trainer.compute_loss

        def record_generate(inputs):
            output = generate(inputs)
            if trainer.model.training:
                self.generated.append(output)
            return output

        def record_loss(model, inputs, *args, **kwargs):
            self.loss_inputs.append(inputs)
            return compute_loss(model, inputs, *args, **kwargs)

        trainer._generate_and_score_completions = record_generate
        trainer.compute_loss = record_loss


def decoded_rows(batch, tokenizer):
    """(prompt text, completion text) of every row, decoded as TRL decodes them for the reward functions."""
    rows = []
    for i in range(len(batch["prompt_ids"])):
        prompt = tokenizer.decode(batch["prompt_ids"][i][batch["prompt_mask"][i].bool()])
        completion = tokenizer.decode(
            batch["completion_ids"][i][batch["completion_mask"][i].bool()], skip_special_tokens=True
        )
        rows.append((prompt, completion))
    return rows


def row_rewards(batch, tokenizer):
    rows = decoded_rows(batch, tokenizer)
    kinds = [re.search(r"\((\w+)\)", prompt).group(1) for prompt, _ in rows]
    return [prompt for prompt, _ in rows], coin_reward([c for _, c in rows], kinds)


def groups_of(batch, tokenizer):
    """Rewards grouped by prompt (rows of one group may be shuffled apart by TRL before the loss)."""
    prompts, rewards = row_rewards(batch, tokenizer)
    groups = defaultdict(list)
    for prompt, reward in zip(prompts, rewards):
        groups[prompt].append(reward)
    return groups


def logged(trainer, name):
    return [entry[name] for entry in trainer.state.log_history if name in entry]


def make_trainer(model, tokenizer, base_args, dataset=None, reward=coin_reward, **kwargs):
    args = VCRLConfig(**{**base_args, **kwargs})
    return VCRLTrainer(
        model, reward, args=args, train_dataset=dataset or toy_dataset(size=96), processing_class=tokenizer
    )


def test_every_trained_group_passes_kappa(model, tokenizer, base_args):
    """Enough groups pass: the loss only ever sees whole groups with p >= kappa, and the batch size is kept."""
    dataset = toy_dataset(kinds=("coin", "coin", "easy", "hard"), size=96)
    trainer = make_trainer(
        model, tokenizer, base_args, dataset=dataset, kappa_schedule=["0:0.5"], max_refill_rounds=4, max_steps=4
    )
    recorder = Recorder(trainer)
    trainer.train()
    assert len(recorder.loss_inputs) == 4
    for inputs in recorder.loss_inputs:
        assert len(inputs["prompt_ids"]) == 8
        groups = groups_of(inputs, tokenizer)
        assert all(len(rewards) == 4 for rewards in groups.values())  # whole groups, no duplicated prompts
        assert all(normalized_variance(rewards) >= 0.5 for rewards in groups.values())
    assert logged(trainer, "vcrl/groups_from_fallback") == [0.0] * 4
    # Easy and hard prompts are half the dataset, so groups were really dropped and replaced.
    assert min(logged(trainer, "vcrl/kept_fraction")) < 1.0
    assert sum(logged(trainer, "vcrl/groups_from_refill")) + sum(logged(trainer, "vcrl/groups_from_bank")) > 0


def test_bank_fills_then_supplies(model, tokenizer, base_args):
    """Surplus passing groups enter the bank; later steps replay them on-policy, at most replay_limit times."""
    dataset = toy_dataset(kinds=("coin", "hard", "hard", "hard"), size=96)
    trainer = make_trainer(
        model, tokenizer, base_args, dataset=dataset, kappa_schedule=["0:0.5"], max_refill_rounds=2, max_steps=6
    )
    replayed = defaultdict(int)
    take = trainer.replay_bank.take

    def counting_take(n, exclude=()):
        rows = take(n, exclude)
        for key, _ in rows:
            replayed[key] += 1
        return rows

    trainer.replay_bank.take = counting_take
    trainer.train()
    bank_sizes, from_bank = logged(trainer, "vcrl/bank_size"), logged(trainer, "vcrl/groups_from_bank")
    assert max(bank_sizes) > 0
    first_fill = next(i for i, size in enumerate(bank_sizes) if size > 0)
    assert sum(from_bank[first_fill + 1 :]) > 0
    assert replayed and max(replayed.values()) <= trainer.args.replay_limit
    for entry in trainer.replay_bank.entries.values():
        assert "(coin)" in entry.row["prompt"]  # only prompts that passed kappa are banked


def test_fallback_keeps_batch_size_and_warns_once(model, tokenizer, base_args):
    """Nothing can pass: after max_refill_rounds the best dropped groups fill the batch, with one warning."""
    dataset = toy_dataset(kinds=("hard", "easy"), size=48)
    trainer = make_trainer(model, tokenizer, base_args, dataset=dataset, max_refill_rounds=1, max_steps=3)
    recorder = Recorder(trainer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    fallback_warnings = [w for w in caught if "kept to fill the batch" in str(w.message)]
    assert len(fallback_warnings) == 1
    assert [len(inputs["prompt_ids"]) for inputs in recorder.loss_inputs] == [8, 8, 8]
    assert logged(trainer, "vcrl/groups_from_fallback") == [2.0, 2.0, 2.0]
    assert logged(trainer, "vcrl/refill_rounds") == [1.0, 1.0, 1.0]
    assert logged(trainer, "vcrl/rollouts_per_trained_group") == [2.0, 2.0, 2.0]
    assert logged(trainer, "vcrl/nonzero_advantage_fraction") == [0.0, 0.0, 0.0]


def test_merged_batch_invariants(model, tokenizer, base_args):
    """Rows of several generation calls: num_items_in_batch is the real loss-token count, widths as TRL's, no NaN."""
    trainer = make_trainer(model, tokenizer, base_args, kappa_schedule=["0:0.5"], max_refill_rounds=3, max_steps=4)
    recorder = Recorder(trainer)
    trainer.train()
    for batch in recorder.generated:
        assert int(batch["num_items_in_batch"]) == int(batch["completion_mask"].sum())
        assert batch["completion_mask"][:, -1].any()  # no all-padding column on the right
        assert batch["prompt_mask"][:, 0].any()  # nor on the left of the prompts
        assert not torch.isnan(batch["advantages"]).any()
        assert {k: v.shape[0] for k, v in batch.items() if torch.is_tensor(v) and v.dim()} == {
            "prompt_ids": 8, "prompt_mask": 8, "completion_ids": 8, "completion_mask": 8, "advantages": 8,
        }  # fmt: skip
    assert sum(logged(trainer, "vcrl/groups_from_refill")) + sum(logged(trainer, "vcrl/groups_from_bank")) > 0


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_advantages_of_the_assembled_batch(model, tokenizer, base_args, scale_rewards):
    """Advantages are recomputed for the trained rows, as GRPO would compute them for that batch."""
    trainer = make_trainer(
        model,
        tokenizer,
        base_args,
        kappa_schedule=["0:0.5"],
        max_refill_rounds=3,
        max_steps=3,
        scale_rewards=scale_rewards,
    )
    recorder = Recorder(trainer)
    trainer.train()
    for batch in recorder.generated:
        prompts, rewards = row_rewards(batch, tokenizer)
        rewards = torch.tensor(rewards)
        grouped = rewards.view(-1, 4)  # VCRL returns groups contiguously
        assert all(len(set(prompts[i : i + 4])) == 1 for i in range(0, 8, 4))
        expected = rewards - grouped.mean(dim=1).repeat_interleave(4)
        if scale_rewards == "group":
            expected = expected / (grouped.std(dim=1).repeat_interleave(4) + 1e-4)
        elif scale_rewards == "batch":
            expected = expected / (rewards.std() + 1e-4)
        torch.testing.assert_close(batch["advantages"], expected)


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
@pytest.mark.parametrize("aggregation", ["sum_then_normalize", "normalize_then_sum"])
def test_grpo_advantages_equal_trl(model, tokenizer, base_args, scale_rewards, aggregation):
    """`grpo_advantages` reproduces GRPOTrainer's advantages on its own (unmerged) batches, two weighted rewards."""

    def half_coin(completions, kind, **kwargs):
        return [r / 2 if k == "coin" else None for r, k in zip(coin_reward(completions, kind), kind)]

    args = GRPOConfig(
        **{**base_args, "max_steps": 2}, scale_rewards=scale_rewards, multi_objective_aggregation=aggregation,
        reward_weights=[1.0, 0.5],
    )  # fmt: skip
    trainer = GRPOTrainer(
        model, [coin_reward, half_coin], args=args, train_dataset=toy_dataset(), processing_class=tokenizer
    )
    captured = []
    calculate, generate = trainer._calculate_rewards, trainer._generate_and_score_completions

    def record_rewards(*args):
        captured.append(calculate(*args))
        return captured[-1]

    def record_advantages(inputs):
        output = generate(inputs)
        captured.append(output["advantages"])
        return output

    trainer._calculate_rewards, trainer._generate_and_score_completions = record_rewards, record_advantages
    trainer.train()
    for rewards, advantages in zip(captured[0::2], captured[1::2]):
        ours = grpo_advantages(rewards, trainer.reward_weights, 4, trainer.scale_rewards, aggregation)
        torch.testing.assert_close(ours, advantages)


LOSS_SETTINGS = [dict(loss_type=loss_type) for loss_type in ("grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo")] + [
    dict(loss_type="grpo", importance_sampling_level="sequence"),  # GSPO
    dict(loss_type="luspo", importance_sampling_level="sequence"),
    dict(loss_type="vespo"),
]


@pytest.mark.parametrize("settings", LOSS_SETTINGS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_loss_types_train(model, tokenizer, base_args, settings):
    """Every loss runs on VCRL's merged batches and moves the weights."""
    before = [p.detach().clone() for p in model.parameters()]
    trainer = make_trainer(model, tokenizer, base_args, kappa_schedule=["0:0.5"], max_refill_rounds=2, **settings)
    trainer.train()
    losses = logged(trainer, "loss")
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert sum(logged(trainer, "vcrl/refill_rounds")) > 0


def test_reference_model_kl(tokenizer, base_args, tmp_path):
    """beta > 0: the reference model's log-probs (ref_per_token_logps) merge with the rest of the rows."""
    from trl_vcrl.testing import build_tiny_model

    build_tiny_model(tokenizer, seed=0).save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    trainer = make_trainer(
        str(tmp_path / "tiny"), tokenizer, base_args, beta=0.04, kappa_schedule=["0:0.5"], max_refill_rounds=2
    )
    recorder = Recorder(trainer)
    trainer.train()
    for batch in recorder.generated:
        assert batch["ref_per_token_logps"].shape == batch["completion_ids"].shape
        assert torch.isfinite(batch["ref_per_token_logps"][batch["completion_mask"].bool()]).all()
    assert all(math.isfinite(kl) for kl in logged(trainer, "kl"))
    assert sum(logged(trainer, "vcrl/refill_rounds")) > 0


def test_lora_trains_only_the_adapter_through_refill_rounds(model, tokenizer, base_args):
    """PEFT: only the adapter trains, through VCRL's refill rounds."""
    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    args = VCRLConfig(**base_args, kappa_schedule=["0:0.5"], max_refill_rounds=2)
    trainer = VCRLTrainer(
        model, coin_reward, args=args, train_dataset=toy_dataset(), processing_class=tokenizer, peft_config=peft_config
    )
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    base_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "base_layer" in n}
    trainer.train()
    params = dict(trainer.model.named_parameters())
    assert any(not torch.equal(params[n], p) for n, p in lora_before.items())
    assert all(torch.equal(params[n], p) for n, p in base_before.items())
    assert sum(logged(trainer, "vcrl/refill_rounds")) > 0


@pytest.mark.parametrize("gradient_checkpointing", [True, False])
@pytest.mark.parametrize("use_peft", [False, True])
@pytest.mark.parametrize("curriculum", [True, False], ids=["vcrl", "grpo"])
def test_generation_leaves_one_input_grad_hook(tokenizer, base_args, gradient_checkpointing, use_peft, curriculum):
    """Each generation call toggles gradient checkpointing; the input embeddings must not collect a hook per call.

    One hook (gradients through checkpointed frozen embeddings) when checkpointing is on, none otherwise, after
    many generation calls: VCRL with refill rounds and GRPO (both switches off), with and without LoRA.
    """
    peft_config = LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM") if use_peft else None
    args = VCRLConfig(
        **{**base_args, "max_steps": 6}, gradient_checkpointing=gradient_checkpointing,
        dynamic_sampling=curriculum, replay=curriculum, kappa_schedule=["0:0.9"], max_refill_rounds=2,
    )  # fmt: skip
    trainer = VCRLTrainer(
        build_tiny_model(tokenizer, seed=0), coin_reward, args=args, train_dataset=toy_dataset(size=96),
        processing_class=tokenizer, peft_config=peft_config,
    )  # fmt: skip
    calls = Recorder(trainer).generated
    trainer.train()
    assert len(calls) == 6 and (not curriculum or sum(logged(trainer, "vcrl/refill_rounds")) > 0)
    hooks = trainer.model.get_input_embeddings()._forward_hooks
    assert len(hooks) == (1 if gradient_checkpointing else 0)


def test_gradient_accumulation_with_steps_per_generation(model, tokenizer, base_args):
    """One VCRL generation batch feeds several micro-batches; generation (and the curriculum) runs once per step."""
    trainer = make_trainer(
        model, tokenizer, base_args, per_device_train_batch_size=4, gradient_accumulation_steps=2,
        steps_per_generation=2, kappa_schedule=["0:0.5"], max_refill_rounds=3, max_steps=3,
    )  # fmt: skip
    recorder = Recorder(trainer)
    trainer.train()
    assert len(recorder.generated) == 3 and len(recorder.loss_inputs) == 6
    for step, batch in enumerate(recorder.generated):
        micro = recorder.loss_inputs[2 * step : 2 * step + 2]
        assert [len(m["prompt_ids"]) for m in micro] == [4, 4]
        # The two micro-batches are exactly the generation batch's rows, shuffled.
        assert sorted(decoded_rows(batch, tokenizer)) == sorted(
            decoded_rows(micro[0], tokenizer) + decoded_rows(micro[1], tokenizer)
        )
        assert all(int(m["num_items_in_batch"]) == int(batch["completion_mask"].sum()) for m in micro)


def test_checkpoint_resume_restores_bank(model, tokenizer, base_args, tmp_path):
    """The bank, refill sampler and schedule position are in every checkpoint; a resumed run continues identically."""
    dataset = toy_dataset(kinds=("coin", "hard"), size=96)
    settings = dict(
        kappa_schedule=["0:0.5", "3:0.9"], max_refill_rounds=2, max_steps=5, save_strategy="steps", save_steps=2
    )
    full = make_trainer(
        model, tokenizer, {**base_args, "output_dir": str(tmp_path / "full")}, dataset=dataset, **settings
    )
    full.train()
    with open(tmp_path / "full" / "checkpoint-2" / STATE_FILE) as f:
        saved = json.load(f)
    assert saved["rollout_step"] == 2 and saved["kappa"] == 0.5 and saved["replay_bank"]["entries"]

    resumed = make_trainer(
        build_tiny_model(tokenizer, seed=0), tokenizer, {**base_args, "output_dir": str(tmp_path / "resumed")},
        dataset=dataset, **settings,
    )  # fmt: skip
    loaded = []
    load = resumed.load_curriculum_state_dict
    resumed.load_curriculum_state_dict = lambda state: loaded.append(state) or load(state)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    assert loaded == [saved]
    assert resumed.curriculum_state_dict() == full.curriculum_state_dict()
    # The resumed history starts with the checkpoint's two logged steps, then the three it ran itself.
    for metric in ("vcrl/bank_size", "vcrl/groups_from_bank", "vcrl/kappa", "loss"):
        assert logged(resumed, metric) == logged(full, metric)


def test_both_switches_off_is_grpo(tokenizer, base_args):
    """dynamic_sampling=False and replay=False reproduce GRPOTrainer's losses exactly for the same seed."""
    from trl_vcrl.testing import build_tiny_model

    def losses(trainer_cls, config_cls, **extra):
        args = config_cls(**{**base_args, "max_steps": 4}, **extra)
        trainer = trainer_cls(
            build_tiny_model(tokenizer, seed=0),
            coin_reward,
            args=args,
            train_dataset=toy_dataset(),
            processing_class=tokenizer,
        )
        trainer.train()
        return logged(trainer, "loss"), logged(trainer, "reward")

    grpo = losses(GRPOTrainer, GRPOConfig)
    vcrl = losses(VCRLTrainer, VCRLConfig, dynamic_sampling=False, replay=False)
    assert vcrl == grpo
    assert any(loss != 0 for loss in grpo[0])


def test_reward_outside_range_is_an_error(model, tokenizer, base_args):
    def out_of_range(completions, **kwargs):
        return [2.0] * len(completions)

    trainer = make_trainer(model, tokenizer, base_args, reward=out_of_range)
    with pytest.raises(ValueError, match=r"outside reward_range=\[0.0, 1.0\] \(out_of_range=2 x weight 1\)"):
        trainer.train()


def test_evaluation_is_not_filtered(model, tokenizer, base_args):
    """Eval goes through GRPOTrainer untouched: no curriculum, no bank changes, no vcrl metrics."""
    trainer = make_trainer(model, tokenizer, base_args, per_device_eval_batch_size=8)
    recorder = Recorder(trainer)
    calls = []
    trainer._curriculum_batch = lambda inputs: calls.append(inputs)
    metrics = trainer.evaluate(eval_dataset=toy_dataset(kinds=("hard",), size=16))
    assert calls == [] and len(trainer.replay_bank) == 0
    assert metrics["eval_reward"] == 0.0
    assert not any(key.startswith("eval_vcrl") for key in metrics)
    assert recorder.generated == []


class FakeVLLMServerClient:
    """Test double of TRL's `VLLMClient` (no vLLM server can run in this suite; see tests/vllm_stage for the real one).

    Imitates the server protocol that `VLLMGeneration.generate` relies on: it receives one prompt per group (the
    unique prompts), samples `n` completions for each, and returns `prompt_ids`, `completion_ids` and per-token
    top-1 `logprobs` (lists of one float per token), grouped by prompt. Completions are drawn from a seeded generator
    so their rewards vary; logprobs are not the policy's, which is what importance sampling corrects for.
    """

    def __init__(self, vocab_size, eos_token_id, seed=0):
        self.generator = torch.Generator().manual_seed(seed)
        self.vocab_size, self.eos_token_id = vocab_size, eos_token_id
        self.calls = []

    def generate(self, prompts, n, max_tokens, **sampling):
        self.calls.append(len(prompts))
        completion_ids, logprobs = [], []
        for _ in prompts:
            for _ in range(n):
                length = int(torch.randint(1, max_tokens + 1, (1,), generator=self.generator))
                ids = torch.randint(10, self.vocab_size, (length,), generator=self.generator).tolist()
                if length < max_tokens:
                    ids[-1] = self.eos_token_id
                completion_ids.append(ids)
                logprobs.append([[-float(torch.rand(1, generator=self.generator)) - 3.0] for _ in ids])
        return {
            "prompt_ids": prompts,
            "completion_ids": completion_ids,
            "logprobs": logprobs,
            "logprob_token_ids": None,
        }


@pytest.mark.parametrize("mode", ["token_truncate", "sequence_mask"])
def test_vllm_server_importance_sampling_branch(model, tokenizer, base_args, mode):
    """TRL's real server-mode generation code (`VLLMGeneration.generate`) over a fake client: refill rounds call
    generation several times per step, weights sync once per step, and the importance-sampling ratio of merged rows
    keeps TRL's shape ((B, T) per token, (B, 1) per sequence)."""
    from trl.generation.vllm_generation import VLLMGeneration

    trainer = make_trainer(
        model, tokenizer, base_args, kappa_schedule=["0:0.5"], max_refill_rounds=3, max_steps=3,
        vllm_importance_sampling_mode=mode,
    )  # fmt: skip
    client = FakeVLLMServerClient(len(tokenizer), tokenizer.eos_token_id)
    generation = VLLMGeneration.__new__(VLLMGeneration)  # server-mode state only; __init__ would connect
    generation.__dict__.update(
        mode="server", accelerator=trainer.accelerator, vllm_client=client, enable_sleep_mode=False,
        temperature=1.0, top_p=1.0, top_k=0, min_p=None, repetition_penalty=1.0,
        max_completion_length=trainer.max_completion_length, logprobs=0, structured_outputs_regex=None,
        generation_kwargs={},
    )  # fmt: skip
    synced_at = []
    generation.sync_weights = lambda: synced_at.append(trainer.state.global_step)
    trainer.use_vllm, trainer.vllm_mode, trainer.vllm_generation, trainer._last_loaded_step = (
        True,
        "server",
        generation,
        -1,
    )
    recorder = Recorder(trainer)
    trainer.train()

    assert synced_at == [0, 1, 2]
    # The server saw one prompt per generated group, several calls per step (refill rounds).
    generated_groups = sum(2 * r for r in logged(trainer, "vcrl/rollouts_per_trained_group"))
    assert len(client.calls) > 3 and sum(client.calls) == generated_groups
    for batch in recorder.generated:
        ratio = batch["importance_sampling_ratio"]
        width = 1 if mode == "sequence_mask" else batch["completion_ids"].size(1)
        assert ratio.shape == (8, width) and torch.isfinite(ratio).all()
        assert batch["sampling_per_token_logps"].shape == batch["completion_ids"].shape
        assert batch["old_per_token_logps"].shape == batch["completion_ids"].shape
        if mode == "token_truncate":  # padding positions carry the neutral ratio
            assert torch.all(ratio[~batch["completion_mask"].bool()] == 1.0)
    assert all(math.isfinite(loss) for loss in logged(trainer, "loss"))


def test_model_card_names_vcrl_and_its_statistics(model, tokenizer, base_args):
    trainer = make_trainer(model, tokenizer, base_args, kappa_schedule=["0:0.5"], max_refill_rounds=2)
    trainer.train()
    trainer.create_model_card(model_name="tiny-vcrl", dataset_name="toy")
    with open(f"{base_args['output_dir']}/README.md") as f:
        card = f.read()
    assert "- vcrl" in card and "jiang2025vcrl" in card and "2509.19803" in card
    assert "## VCRL curriculum" in card and "| replay_limit | `2` | paper §3.2: 2 |" in card
    assert "| kappa schedule (rollout step, kappa) | `((0, 0.5),)` | paper §4.1: (0, 0.3), (20, 0.8) |" in card
    assert "| efficient_sampling | `True` | ours" in card
    kept = logged(trainer, "vcrl/kept_fraction")
    assert f"| mean kept fraction | {sum(kept) / len(kept):.4g} |" in card
    assert card.index("## VCRL curriculum") < card.index("### Framework versions")


def test_checkpoint_state_is_written_before_the_hub_push(model, tokenizer, base_args):
    """HF Trainer pushes each checkpoint from inside `_save_checkpoint`; the VCRL state must already be there."""
    trainer = make_trainer(model, tokenizer, base_args, max_steps=2, save_strategy="steps", save_steps=1)
    pushed = []
    trainer.args.push_to_hub = True  # set after init: init would create the Hub repository
    trainer._push_from_checkpoint = lambda folder: pushed.append(sorted(os.listdir(folder)))
    trainer.train()
    assert len(pushed) == 2 and all(STATE_FILE in files and "model.safetensors" in files for files in pushed)
