"""One rank of a two-process VCRL run (started by tests/test_distributed.py with torchrun, gloo on CPU).

Writes what this rank decided to `<out>/rank<r>.json`: the bank, per-step curriculum decisions, and the sizes and
rewards of the batches its loss saw, so the test can check both ranks agree, nobody hung, and what each trained.

Scenarios:
- `uneven`: half the prompts never vary, shuffled, so each rank drops a different number of groups per step.
- `one_rank_fails_paper` / `one_rank_fails_efficient`: unshuffled prompts laid out so that rank 0's share of every
  first generation call is "hard" (always fails) and rank 1's is "coin"; the paper's procedure
  (`efficient_sampling=False`) or the efficient one, with one refill round.
"""

import json
import sys

from conftest import coin_reward, toy_dataset
from test_trainer import groups_of

from trl_vcrl import VCRLConfig, VCRLTrainer, normalized_variance
from trl_vcrl.testing import CPU_RUN_SETTINGS, build_tiny_model_and_tokenizer

SCENARIOS = {
    "uneven": dict(dataset=dict(kinds=("coin", "hard"), size=96), settings=dict(max_refill_rounds=3)),
    "one_rank_fails_paper": dict(
        dataset=dict(kinds=("hard",) * 4 + ("coin",) * 4, size=96),
        settings=dict(
            max_refill_rounds=1,
            shuffle_dataset=False,
            efficient_sampling=False,
            max_steps=6,
            per_device_train_batch_size=16,
        ),
    ),
    "one_rank_fails_efficient": dict(
        dataset=dict(kinds=("hard",) * 4 + ("coin",) * 4, size=96),
        settings=dict(max_refill_rounds=1, shuffle_dataset=False, max_steps=6, per_device_train_batch_size=16),
    ),
}


def main(out_dir: str, scenario: str) -> None:
    model, tokenizer = build_tiny_model_and_tokenizer(seed=0)
    args = VCRLConfig(
        **{
            **CPU_RUN_SETTINGS,
            **dict(output_dir=out_dir, per_device_train_batch_size=8, num_generations=4, max_completion_length=8,
                   max_steps=4, learning_rate=1e-3, seed=0, disable_tqdm=True, kappa_schedule=["0:0.5"]),
            **SCENARIOS[scenario]["settings"],
        }
    )  # fmt: skip
    trainer = VCRLTrainer(
        model,
        coin_reward,
        args=args,
        train_dataset=toy_dataset(**SCENARIOS[scenario]["dataset"]),
        processing_class=tokenizer,
    )
    rank = trainer.accelerator.process_index
    decisions, selections, loss_rows, loss_group_p = [], [], [], []
    assemble, compute_loss = trainer._assemble, trainer.compute_loss

    def record_assemble(rounds, selection):
        decisions.append(
            [[(c.round, c.process, c.index, c.source, round(c.p, 6)) for c in chosen] for chosen in selection.chosen]
        )
        selections.append({"fallback": len(selection.fallback), "surplus": len(selection.surplus),
                           "moved": len(selection.moved())})  # fmt: skip
        return assemble(rounds, selection)

    def record_loss(model, inputs, *a, **kw):
        loss_rows.append(len(inputs["prompt_ids"]))
        loss_group_p.append([normalized_variance(r) for r in groups_of(inputs, tokenizer).values()])
        return compute_loss(model, inputs, *a, **kw)

    trainer._assemble, trainer.compute_loss = record_assemble, record_loss
    trainer.train()
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump({"state": trainer.curriculum_state_dict(), "decisions": decisions, "selections": selections,
                   "loss_rows": loss_rows, "loss_group_p": loss_group_p}, f)  # fmt: skip
    trainer.accelerator.end_training()  # destroy the gloo group before exit, as `trl-vcrl train` does


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
