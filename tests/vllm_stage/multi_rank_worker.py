"""One VCRL trainer rank (gloo, CPU) of the two-process tests, under `torchrun` or `accelerate launch`:

    torchrun --nproc_per_node 2 multi_rank_worker.py --out DIR --model DIR [--base-url http://127.0.0.1:PORT]
    accelerate launch --config_file recipes/accelerate/zero3.yaml --num_processes 2 --mixed_precision no \
        multi_rank_worker.py --out DIR --model DIR [--base-url http://127.0.0.1:PORT]

With --base-url: server mode, both ranks against one server; rank 0 alone talks to it (TRL's design) with the weight
transfer replaced by `WeightTransferDouble`. Without: colocate mode, one real engine per rank.

Drops are as uneven as possible: with 2 prompts per rank and step, rank 0 gets only zero-variance prompts (all
dropped every step) and rank 1 only variable ones. Each rank writes DIR/rank{R}.json: its `Recorder.summary()`, its
curriculum state (bank, refill sampler, schedule position) and its distributed setup.
"""

import argparse
import os

import vllm_support


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--base-url")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()

    if args.base_url:
        double = vllm_support.WeightTransferDouble(args.out).install()
        mode = dict(vllm_mode="server", vllm_server_base_url=args.base_url, vllm_server_timeout=30)
    else:
        double = None
        vllm_support.keep_vllm_cpu_weights_reloadable()
        mode = dict(vllm_mode="colocate")
    # accelerate picks DeepSpeed only for a trainer that does not force CPU (use_cpu=False); on a machine without GPU
    # the device is the CPU all the same. Everything else runs with use_cpu=True (gloo).
    use_cpu = os.environ.get("ACCELERATE_USE_DEEPSPEED") != "true"
    config = vllm_support.vcrl_config(
        os.path.join(args.out, "trainer"),
        max_steps=args.steps,
        use_cpu=use_cpu,
        ddp_backend="gloo",
        shuffle_dataset=False,
        **mode,
    )
    # Sequential sampling, 2 prompts per rank and step: rows 0,1 -> rank 0, rows 2,3 -> rank 1, and so on.
    dataset = vllm_support.make_dataset(400, pattern=("const", "const", "var", "var"))
    trainer = vllm_support.build_trainer(args.model, config, dataset)
    recorder = vllm_support.Recorder(trainer)
    trainer.train()

    rank = trainer.accelerator.process_index
    vllm_support.write_json(
        os.path.join(args.out, f"rank{rank}.json"),
        {
            **recorder.summary(),
            "world_size": trainer.accelerator.num_processes,
            "distributed_type": str(trainer.accelerator.distributed_type),
            "zero_stage": trainer.accelerator.state.deepspeed_plugin.zero_stage
            if trainer.is_deepspeed_enabled
            else None,
            "global_step": trainer.state.global_step,
            "curriculum_state": trainer.curriculum_state_dict(),
            "pushes": double.pushes if double else None,
        },
    )
    trainer.accelerator.end_training()  # destroy the gloo group before exit, as `trl-vcrl train` does


if __name__ == "__main__":
    main()
