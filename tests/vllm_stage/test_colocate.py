"""Colocate mode end to end on CPU: a real `vllm.LLM` in the trainer process, TRL's real weight sync, VCRL's refill
rounds. Nothing is doubled (conftest applies `keep_vllm_cpu_weights_reloadable`, a vLLM-CPU kernel choice).

Half of the prompts have zero reward variance, so every step drops groups and refills them (bank, then dataset):
several generation calls per optimizer step. `check_vcrl_run` asserts one weight sync per step, whole batches with
consistent importance-sampling keys, vLLM sampling with the trainer's current weights, and every kept group at
p >= kappa (rewards recomputed from the tokens that reach the trainer).
"""

import pytest
from vllm_support import Recorder, build_trainer, check_vcrl_run, release_trainer, vcrl_config

STEPS = 3


@pytest.mark.parametrize(
    "lora, is_mode",
    [(False, "token_truncate"), (True, "sequence_mask")],  # sequence level: the (B, 1) ratio goes through the merge
    ids=["full-weights", "lora"],
)
def test_vcrl_colocate(lora, is_mode, tiny_model_dir, tmp_path):
    peft_config = None
    if lora:  # TRL merges the adapter, pushes the merged weights, unmerges: once per step
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], task_type="CAUSAL_LM"
        )
    args = vcrl_config(str(tmp_path), max_steps=STEPS, vllm_importance_sampling_mode=is_mode,
                       learning_rate=5e-2 if lora else 1e-2)  # fmt: skip
    trainer = build_trainer(tiny_model_dir, args, peft_config=peft_config)
    try:
        recorder = Recorder(trainer)
        trainer.train()
        run = recorder.summary()
        check_vcrl_run(run, steps=STEPS, rows=args.per_device_train_batch_size)
        assert sum(row["vcrl/refill_rounds"] for row in run["vcrl_logs"]) > 0
    finally:
        release_trainer(trainer)
