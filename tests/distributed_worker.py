"""One rank of a two-process VCRL run (started by tests/test_distributed.py with torchrun, gloo on CPU).

Writes what this rank decided to `<out>/rank<r>.json`: the bank, per-step curriculum decisions and the sizes of the
batches its loss saw, so the test can check both ranks agree and nobody hung.
"""

import json
import sys

from conftest import coin_reward, toy_dataset

from trl_vcrl import VCRLConfig, VCRLTrainer
from trl_vcrl.tiny_model import build_tiny_model_and_tokenizer


def main(out_dir: str) -> None:
    model, tokenizer = build_tiny_model_and_tokenizer(seed=0)
    args = VCRLConfig(
        output_dir=out_dir, per_device_train_batch_size=8, num_generations=4, max_completion_length=8, max_steps=4,
        learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, bf16=False, seed=0,
        beta=0.0, disable_tqdm=True, kappa_schedule=["0:0.5"], max_refill_rounds=3,
    )  # fmt: skip
    # Half the prompts never vary: each rank drops a different number of groups per step.
    trainer = VCRLTrainer(
        model,
        coin_reward,
        args=args,
        train_dataset=toy_dataset(kinds=("coin", "hard"), size=96),
        processing_class=tokenizer,
    )
    rank = trainer.accelerator.process_index
    decisions, loss_rows = [], []
    assemble, compute_loss = trainer._assemble, trainer.compute_loss

    def record_assemble(rounds, selection):
        decisions.append(
            [[(c.round, c.process, c.index, c.source, round(c.p, 6)) for c in chosen] for chosen in selection.chosen]
        )
        return assemble(rounds, selection)

    def record_loss(model, inputs, *a, **kw):
        loss_rows.append(len(inputs["prompt_ids"]))
        return compute_loss(model, inputs, *a, **kw)

    trainer._assemble, trainer.compute_loss = record_assemble, record_loss
    trainer.train()
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump({"state": trainer.curriculum_state_dict(), "decisions": decisions, "loss_rows": loss_rows}, f)
    trainer.accelerator.end_training()  # destroy the gloo group before exit, as `trl-vcrl train` does


if __name__ == "__main__":
    main(sys.argv[1])
