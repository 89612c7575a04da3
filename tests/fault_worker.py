"""A VCRL training process for the fault tests in tests/test_robustness.py, run as a subprocess.

`python fault_worker.py OUT MODE`:
- `full`: 4 steps with a checkpoint every step, log history to `OUT/full.json`.
- `kill`: the same run in `OUT/run`, SIGKILLed while saving checkpoint 3 (after the model, optimizer and VCRL state,
  before the RNG and trainer state): what a crash mid-save leaves.
- `resume`: `train(resume_from_checkpoint=True)` in `OUT/run`, log history to `OUT/resume.json`.
- `reward-error` (under torchrun, two processes): rank 1's reward function raises at the first step; each rank
  writes the error it stopped with to `OUT/rank<r>.txt`.
"""

import json
import os
import signal
import sys

import transformers
from conftest import coin_reward, toy_dataset

from trl_vcrl import VCRLConfig, VCRLTrainer
from trl_vcrl.testing import build_tiny_model_and_tokenizer


def make_trainer(output_dir: str, reward_funcs=coin_reward) -> VCRLTrainer:
    model, tokenizer = build_tiny_model_and_tokenizer(seed=0)
    args = VCRLConfig(
        output_dir=output_dir, per_device_train_batch_size=8, num_generations=4, max_completion_length=8, max_steps=4,
        learning_rate=1e-3, logging_steps=1, save_strategy="steps", save_steps=1, report_to="none", use_cpu=True,
        bf16=False, seed=0, beta=0.0, disable_tqdm=True, kappa_schedule=["0:0.5"], max_refill_rounds=2,
    )  # fmt: skip
    dataset = toy_dataset(kinds=("coin", "coin", "hard"), size=96)
    return VCRLTrainer(model, reward_funcs, args=args, train_dataset=dataset, processing_class=tokenizer)


def main(out: str, mode: str) -> None:
    if mode == "full":
        trainer = make_trainer(os.path.join(out, "full"))
        trainer.train()
    elif mode == "kill":
        save_rng_state = transformers.Trainer._save_rng_state

        def killed_at_step_3(self, output_dir):
            if self.state.global_step == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return save_rng_state(self, output_dir)

        transformers.Trainer._save_rng_state = killed_at_step_3
        make_trainer(os.path.join(out, "run")).train()
        return
    elif mode == "resume":
        trainer = make_trainer(os.path.join(out, "run"))
        trainer.train(resume_from_checkpoint=True)
    elif mode == "reward-error":
        trainer = None

        def rank_one_fails(completions, **kwargs):
            if trainer.accelerator.process_index == 1:
                raise ValueError("verifier crashed on rank 1")
            return coin_reward(completions, **kwargs)

        trainer = make_trainer(out, rank_one_fails)
        try:
            trainer.train()
        except RuntimeError as error:
            with open(os.path.join(out, f"rank{trainer.accelerator.process_index}.txt"), "w") as f:
                f.write(str(error))
            trainer.accelerator.end_training()
            sys.exit(1)
        return
    with open(os.path.join(out, f"{mode}.json"), "w") as f:
        json.dump(trainer.state.log_history, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
