"""`trl-vcrl demo`: the offline default run, a real VCRL training of SmolLM2-135M-Instruct on CPU.

Trains with LoRA on reasoning-gym arithmetic of mixed difficulty, prints a curriculum summary and writes a plot.
"""

import argparse
import logging
import os

# Our choices for ~15 minutes on 2 CPU cores: short answers, small groups, few refill rounds.
DEMO_STEPS = 20
DEMO_PROMPTS_PER_STEP = 4
DEMO_GENERATIONS = 4


def demo(output_dir: str, max_steps: int) -> None:
    from peft import LoraConfig

    from .config import VCRLConfig
    from .data import arithmetic_curriculum_dataset
    from .plotting import plot_curriculum
    from .pretrained import load_smollm2
    from .rewards import accuracy_reward
    from .trainer import VCRLTrainer, curriculum_summary

    model_dir = load_smollm2()
    args = VCRLConfig(
        output_dir=output_dir,
        per_device_train_batch_size=DEMO_PROMPTS_PER_STEP * DEMO_GENERATIONS,
        num_generations=DEMO_GENERATIONS,
        max_completion_length=24,
        max_steps=max_steps,
        learning_rate=2e-4,
        kappa_warmup_steps=max(1, max_steps // 3),
        max_refill_rounds=1,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        beta=0.0,
        seed=0,
    )
    trainer = VCRLTrainer(
        model_dir,
        accuracy_reward,
        args=args,
        train_dataset=arithmetic_curriculum_dataset(size=512, seed=0),
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    trainer.train()
    history = trainer.state.log_history
    rewards = [entry["reward"] for entry in history if "reward" in entry]
    half = max(1, len(rewards) // 2)
    print("\nVCRL demo summary")
    print(f"  reward, first half of steps: {sum(rewards[:half]) / half:.3f}")
    print(f"  reward, second half of steps: {sum(rewards[half:]) / max(1, len(rewards) - half):.3f}")
    for name, value in curriculum_summary(history).items():
        print(f"  {name}: {value:.4g}")
    plot_path = os.path.join(output_dir, "curriculum.png")
    plot_curriculum(history, plot_path, title="VCRL demo: SmolLM2-135M-Instruct, arithmetic")
    print(f"  curriculum plot: {plot_path}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="trl-vcrl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="the offline default run (CPU, no network)")
    demo_parser.add_argument("--output_dir", default="runs/demo")
    demo_parser.add_argument("--max_steps", type=int, default=DEMO_STEPS)
    parsed = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    demo(parsed.output_dir, parsed.max_steps)


if __name__ == "__main__":
    main()
