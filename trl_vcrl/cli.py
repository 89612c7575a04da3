"""`trl-vcrl`: VCRL training from YAML recipes, benchmark evaluation, and the offline demo.

- `trl-vcrl train --config NAME_OR_PATH [--field value ...]`: trains with [`VCRLTrainer`]. `--config` takes a YAML
  file or the name of a bundled recipe (`qwen3_4b_base_vcrl`). Every field of `VCRLScriptArguments`, `VCRLConfig`
  (all of `GRPOConfig`) and `trl.ModelConfig` is a YAML key or a flag; flags override the YAML (TRL's `TrlParser`,
  the format of `trl grpo`).
- `trl-vcrl recipes [NAME]`: lists the bundled recipes and accelerate configs, or prints the path of one.
- `trl-vcrl smoke`: a few VCRL steps with vLLM on this machine's GPUs, checked ([`~trl_vcrl.smoke`]).
- `trl-vcrl eval --model PATH [--benchmarks aime24,...] [--k 4]`: avg@k and pass@k on the paper's benchmarks.
- `trl-vcrl demo [--compare]`: the offline default run, a real VCRL training of SmolLM2-135M-Instruct on CPU in a few
  minutes (`trl_vcrl.demo`); `--compare` adds the same run with GRPO.
"""

import argparse
import json
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .data import EVAL_BENCHMARKS
from .demo import DEMO_STEPS, DEMO_TORCH_THREADS, run_demo
from .evaluation import (
    SamplingSettings,
    check_settings,
    evaluate,
    format_table,
    resolve_backend,
    transformers_generate_fn,
    vllm_generate_fn,
)
from .rewards import accuracy_reward, format_reward

# Names accepted by `reward_funcs`.
REWARD_FUNCS = {"accuracy": accuracy_reward, "format": format_reward}
# `dataset_name` values that load DAPO-Math-17k from the Hub.
DAPO_MATH_NAMES = ("dapo-math-17k", "BytedTsinghua-SIA/DAPO-Math-17k")
LOCAL_DATA_SUFFIXES = (".json", ".jsonl", ".parquet")
# Rows generated for `dataset_name: arithmetic` when `max_train_samples` is not set.
ARITHMETIC_DEFAULT_SIZE = 512
# The recipes ship inside the package (package data), so they work after a plain `pip install`.
RECIPES_DIR = Path(__file__).parent / "recipes"


@dataclass
class VCRLScriptArguments:
    """
    Script arguments of `trl-vcrl train`: the training data and the reward functions.

    Args:
        dataset_name (`str`, *optional*, defaults to `"dapo-math-17k"`):
            `"dapo-math-17k"` (or its Hub id `"BytedTsinghua-SIA/DAPO-Math-17k"`): the paper's training set, loaded
            with [`~trl_vcrl.data.load_dapo_math`]; `"arithmetic"`: the offline reasoning-gym mix of
            [`~trl_vcrl.data.arithmetic_curriculum_dataset`]; or the path of a local `.json`, `.jsonl` or `.parquet`
            file in the DAPO-Math-17k Hub schema.
        max_train_samples (`int`, *optional*):
            Train on this many prompts: a seeded random subset of DAPO-Math, or the number of arithmetic problems
            generated (512 when unset). `None` uses all of DAPO-Math.
        conversational (`bool`, *optional*, defaults to `True`):
            Prompts as one-message user conversations, rendered with the tokenizer's chat template; `False` gives
            plain-text prompts, for models without a chat template.
        reward_funcs (`list[str]`, *optional*, defaults to `["accuracy"]`):
            Reward functions of `trl_vcrl.rewards` by name: `"accuracy"` (math-verify, the paper's binary reward) and
            `"format"` (exactly one boxed answer). Several are combined with `reward_weights` of the training config.
        max_prompt_length (`int`, *optional*):
            Drop training prompts longer than this many tokens after templating, and log how many
            ([`~trl_vcrl.data.drop_long_prompts`]). TRL 1.16 has no prompt-length limit, and a vLLM engine refuses a
            prompt plus `max_completion_length` tokens beyond its context length, which ends the run. `None` keeps
            every prompt.
    """

    dataset_name: str = field(
        default="dapo-math-17k",
        metadata={
            "help": "Training data: 'dapo-math-17k' (or 'BytedTsinghua-SIA/DAPO-Math-17k', the paper's set, from the "
            "Hub), 'arithmetic' (offline reasoning-gym mix of 4 difficulty levels), or a local .json/.jsonl/.parquet "
            "file in the DAPO-Math-17k Hub schema."
        },
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={
            "help": "Number of training prompts: a seeded random subset of DAPO-Math, or the number of arithmetic "
            f"problems generated (default {ARITHMETIC_DEFAULT_SIZE}). Unset uses all of DAPO-Math."
        },
    )
    conversational: bool = field(
        default=True,
        metadata={
            "help": "Give prompts as user conversations rendered with the tokenizer's chat template; False gives "
            "plain-text prompts for models without a chat template."
        },
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy"],
        metadata={
            "help": f"Reward functions of trl_vcrl.rewards by name, among {sorted(REWARD_FUNCS)}: accuracy is the "
            "paper's math-verify reward, format checks for exactly one boxed answer. Weighted by reward_weights."
        },
    )
    max_prompt_length: int | None = field(
        default=None,
        metadata={
            "help": "Drop training prompts longer than this many tokens after templating (the count is logged). A "
            "vLLM engine refuses a prompt plus max_completion_length tokens beyond its context length, which ends "
            "the run; keep max_prompt_length + max_completion_length <= the engine's max model length. Unset keeps "
            "every prompt."
        },
    )

    def __post_init__(self):
        if isinstance(self.reward_funcs, str):  # a single name from a YAML scalar
            self.reward_funcs = [self.reward_funcs]
        unknown = [name for name in self.reward_funcs if name not in REWARD_FUNCS]
        if unknown or not self.reward_funcs:
            raise ValueError(
                f"reward_funcs={self.reward_funcs}: unknown reward function(s) {unknown}; allowed values are "
                f"{sorted(REWARD_FUNCS)}."
            )
        is_local_file = Path(self.dataset_name).suffix in LOCAL_DATA_SUFFIXES and Path(self.dataset_name).is_file()
        if self.dataset_name not in (*DAPO_MATH_NAMES, "arithmetic") and not is_local_file:
            raise ValueError(
                f"dataset_name={self.dataset_name!r} is neither one of {[*DAPO_MATH_NAMES, 'arithmetic']} nor an "
                f"existing local {'/'.join(LOCAL_DATA_SUFFIXES)} file in the DAPO-Math-17k Hub schema."
            )
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ValueError(f"max_train_samples must be >= 1, got {self.max_train_samples}.")
        if self.max_prompt_length is not None and self.max_prompt_length < 1:
            raise ValueError(f"max_prompt_length must be >= 1, got {self.max_prompt_length}.")


def bundled_recipes() -> dict[str, Path]:
    """The recipes shipped with the package by name: training configs by file stem (`qwen3_4b_base_vcrl`),
    accelerate configs as `accelerate/<stem>` (`accelerate/zero3`)."""
    paths = sorted(RECIPES_DIR.glob("*.yaml")) + sorted(RECIPES_DIR.glob("accelerate/*.yaml"))
    return {path.relative_to(RECIPES_DIR).with_suffix("").as_posix(): path for path in paths}


def recipe_summary(path: Path) -> str:
    """The first sentence of a recipe's header comment."""
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# ").strip())
    text = " ".join(header)
    match = re.match(r"(.+?\.)(\s|$)", text)
    return match.group(1) if match else text


def resolve_config(config: str) -> str:
    """The YAML file a `--config` value names: an existing file as given, otherwise a bundled training recipe by name
    (with or without `.yaml`)."""
    if Path(config).is_file():
        return config
    name = config.removesuffix(".yaml")
    recipes = {name: path for name, path in bundled_recipes().items() if not name.startswith("accelerate/")}
    if name in recipes:
        return str(recipes[name])
    raise ValueError(
        f"--config {config!r} is neither an existing file nor a bundled recipe; bundled recipes are {sorted(recipes)} "
        "(`trl-vcrl recipes` lists them)."
    )


def resolve_config_args(argv: list[str]) -> list[str]:
    """`argv` of `trl-vcrl train` with the value of its `--config` resolved to a file."""
    argv = list(argv)
    for index, arg in enumerate(argv[:-1]):
        if arg == "--config":
            argv[index + 1] = resolve_config(argv[index + 1])
    return argv


def print_recipes(name: str | None) -> None:
    """`trl-vcrl recipes`: list the bundled recipes, or print the path of the one named."""
    recipes = bundled_recipes()
    if name is not None:
        key = name.removesuffix(".yaml")
        if key not in recipes:
            raise ValueError(f"No bundled recipe {name!r}; bundled recipes are {sorted(recipes)}.")
        print(recipes[key])
        return
    width = max(len(key) for key in recipes)
    print("Training recipes (trl-vcrl train --config NAME):")
    for key, path in recipes.items():
        if not key.startswith("accelerate/"):
            print(f"  {key:<{width}}  {recipe_summary(path)}")
    print('Accelerate configs (accelerate launch --config_file "$(trl-vcrl recipes NAME)" ...):')
    for key, path in recipes.items():
        if key.startswith("accelerate/"):
            print(f"  {key:<{width}}  {recipe_summary(path)}")
    print(f"Directory: {RECIPES_DIR}  (`trl-vcrl recipes NAME` prints a recipe's path, e.g. to copy and edit it)")


def make_train_parser():
    """TRL's argument parser over `(VCRLScriptArguments, VCRLConfig, ModelConfig)`, reading `--config` YAML files."""
    from trl import ModelConfig, TrlParser

    from .config import VCRLConfig

    return TrlParser((VCRLScriptArguments, VCRLConfig, ModelConfig), prog="trl-vcrl train")


def load_train_dataset(script_args: VCRLScriptArguments, seed: int):
    """The training set `script_args` describes, in `trl_vcrl.data`'s schema (`prompt`, `answer`, `source`)."""
    from .data import arithmetic_curriculum_dataset, load_dapo_math

    if script_args.dataset_name == "arithmetic":
        size = script_args.max_train_samples or ARITHMETIC_DEFAULT_SIZE
        return arithmetic_curriculum_dataset(size=size, seed=seed, conversational=script_args.conversational)
    path = None if script_args.dataset_name in DAPO_MATH_NAMES else script_args.dataset_name
    dataset = load_dapo_math(path, conversational=script_args.conversational)
    if script_args.max_train_samples is not None and script_args.max_train_samples < len(dataset):
        # A seeded random subset rather than a prefix, which need not be representative of the whole set.
        dataset = dataset.shuffle(seed=seed).select(range(script_args.max_train_samples))
    return dataset


def train(script_args, training_args, model_args):
    """Train with [`VCRLTrainer`] as the parsed arguments describe, then save model, trainer state and model card.

    Args:
        script_args (`VCRLScriptArguments`):
            Data and reward functions.
        training_args ([`VCRLConfig`]):
            Training settings, the output directory among them.
        model_args ([`~trl.ModelConfig`]):
            Model path, dtype, attention implementation, quantization and LoRA settings.

    Returns:
        [`VCRLTrainer`]: The trained trainer.
    """
    from transformers import AutoTokenizer
    from trl import get_peft_config, get_quantization_config

    from .data import drop_long_prompts
    from .trainer import VCRLTrainer

    if model_args.model_name_or_path is None:
        raise ValueError("model_name_or_path is required: a Hub model id or a local model directory.")
    engine_length = training_args.vllm_max_model_length
    if training_args.use_vllm and training_args.vllm_mode == "colocate" and engine_length is not None:
        if script_args.max_prompt_length is None:
            raise ValueError(
                f"vllm_max_model_length={engine_length} needs max_prompt_length: a longer prompt plus "
                f"max_completion_length={training_args.max_completion_length} tokens would stop the run in the "
                "colocated engine."
            )
        if script_args.max_prompt_length + training_args.max_completion_length > engine_length:
            raise ValueError(
                f"max_prompt_length={script_args.max_prompt_length} + max_completion_length="
                f"{training_args.max_completion_length} exceeds vllm_max_model_length={engine_length}."
            )
    model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    # Explicit model_init_kwargs in the training config win over ModelConfig's.
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = model_init_kwargs

    train_dataset = load_train_dataset(script_args, training_args.seed)
    if script_args.max_prompt_length is not None:
        tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)
        train_dataset = drop_long_prompts(
            train_dataset, tokenizer, script_args.max_prompt_length, training_args.chat_template_kwargs
        )

    trainer = VCRLTrainer(
        model=model_args.model_name_or_path,
        reward_funcs=[REWARD_FUNCS[name] for name in script_args.reward_funcs],
        args=training_args,
        train_dataset=train_dataset,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    # trainer_state.json holds the log history, so `plot_curriculum(output_dir)` works without a checkpoint.
    trainer.save_state()
    trainer.create_model_card(dataset_name=script_args.dataset_name)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    return trainer


def _parse_data_files(items: list[str]) -> dict[str, str]:
    data_files = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--data_files expects NAME=PATH items, got {item!r}.")
        data_files[name] = path
    return data_files


def run_eval(args: argparse.Namespace) -> dict:
    """Load the model on the chosen backend, evaluate, and return the results with the settings used."""
    from transformers import AutoTokenizer

    backend = resolve_backend(args.backend)
    benchmarks = [name.strip() for name in args.benchmarks.split(",") if name.strip()]
    data_files = _parse_data_files(args.data_files)
    # Before loading the model: a typo should not cost a model load.
    check_settings(benchmarks, args.k, args.num_samples or args.k, data_files)
    sampling = SamplingSettings(args.max_new_tokens, args.temperature, args.top_p, args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if backend == "vllm":
        generate = vllm_generate_fn(
            args.model,
            sampling,
            dtype=args.dtype,
            tensor_parallel_size=args.tensor_parallel_size,
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_model_len=args.max_model_len,
        )
        batch_size = args.batch_size or 256  # vLLM schedules a whole batch at once; larger batches run faster
    else:
        import torch
        from transformers import AutoModelForCausalLM

        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=args.dtype).to(device).eval()
        generate = transformers_generate_fn(model, tokenizer, sampling)
        batch_size = args.batch_size or 8
    results = evaluate(
        generate,
        tokenizer,
        benchmarks,
        k=args.k,
        num_samples=args.num_samples,
        data_files=data_files,
        limit=args.limit,
        batch_size=batch_size,
        conversational=not args.plain_text,
    )
    settings = {
        "model": args.model,
        "backend": backend,
        "k": args.k,
        "num_samples": args.num_samples or args.k,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens,
        "limit": args.limit,
        "seed": args.seed,
        "plain_text": args.plain_text,
    }
    return settings | results


def make_parser() -> argparse.ArgumentParser:
    """The `trl-vcrl` parser with the `demo` and `eval` subcommands; `train` is listed here, parsed by TrlParser."""
    parser = argparse.ArgumentParser(
        prog="trl-vcrl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "train",
        add_help=False,
        help="VCRL training: --config with a YAML file or a bundled recipe name, plus any field as a flag (see "
        "`trl-vcrl train --help`)",
    )
    recipes_parser = commands.add_parser(
        "recipes", help="list the bundled recipes and accelerate configs, or print the path of one"
    )
    recipes_parser.add_argument(
        "name", nargs="?", help="a recipe (qwen3_4b_base_vcrl) or accelerate config (accelerate/zero3): print its path"
    )
    smoke_parser = commands.add_parser(
        "smoke",
        help="a few VCRL steps with vLLM on this machine's GPUs (colocate, then server mode); skips without one",
    )
    smoke_parser.add_argument("--output_dir", default="runs/smoke")

    eval_parser = commands.add_parser("eval", help="avg@k and pass@k on the paper's math benchmarks")
    eval_parser.add_argument("--model", required=True, help="Hub id or local directory of the model to evaluate.")
    eval_parser.add_argument(
        "--benchmarks",
        default=",".join(EVAL_BENCHMARKS),
        help=f"Comma-separated benchmarks among {list(EVAL_BENCHMARKS)} (default: all five).",
    )
    eval_parser.add_argument("--k", type=int, default=4, help="The k of avg@k and pass@k (default: 4).")
    eval_parser.add_argument(
        "--num_samples",
        type=int,
        default=None,
        help="Samples per problem n >= k for the unbiased pass@k estimator (default: k).",
    )
    eval_parser.add_argument(
        "--backend",
        choices=["auto", "vllm", "transformers"],
        default="auto",
        help="Generation backend; auto is vLLM when importable and a CUDA device is visible, else transformers.",
    )
    eval_parser.add_argument("--max_new_tokens", type=int, default=4096, help="Longest completion (default: 4096).")
    # Our choice: Qwen3's recommended sampling for reasoning; the paper does not state its evaluation sampling.
    eval_parser.add_argument("--temperature", type=float, default=0.6, help="Sampling temperature (default: 0.6).")
    eval_parser.add_argument("--top_p", type=float, default=0.95, help="Nucleus sampling mass (default: 0.95).")
    eval_parser.add_argument("--limit", type=int, default=None, help="Only the first N problems of each benchmark.")
    eval_parser.add_argument(
        "--plain_text",
        action="store_true",
        help="Plain-text prompts instead of the chat template, to match a model trained with conversational: false "
        "(the recipes' base models).",
    )
    eval_parser.add_argument(
        "--data_files",
        nargs="*",
        default=[],
        metavar="NAME=PATH",
        help="Local .json/.jsonl/.parquet file of a benchmark in its Hub schema, e.g. aime24=aime24.jsonl "
        "(offline use); other benchmarks are downloaded.",
    )
    eval_parser.add_argument("--output", default="eval_results.json", help="JSON file for the results.")
    eval_parser.add_argument(
        "--batch_size", type=int, default=None, help="Prompts per generation call (default: 8, vLLM: 256)."
    )
    eval_parser.add_argument("--dtype", default="auto", help="Model weight dtype (default: auto).")
    eval_parser.add_argument("--seed", type=int, default=0, help="Sampling seed (default: 0).")
    eval_parser.add_argument("--tensor_parallel_size", type=int, default=1, help="vLLM: GPUs per model (default: 1).")
    eval_parser.add_argument(
        "--gpu_memory_utilization", type=float, default=0.9, help="vLLM: share of GPU memory (default: 0.9)."
    )
    eval_parser.add_argument(
        "--max_model_len", type=int, default=None, help="vLLM: context length (default: model's)."
    )

    demo_parser = commands.add_parser("demo", help="the offline default run (CPU, no network), a few minutes")
    demo_parser.add_argument("--output_dir", default="runs/demo", help="Logs and plots (default: runs/demo).")
    demo_parser.add_argument("--max_steps", type=int, default=DEMO_STEPS, help=f"Steps (default: {DEMO_STEPS}).")
    demo_parser.add_argument("--seed", type=int, default=0, help="Seed of prompts, sampling and LoRA (default: 0).")
    demo_parser.add_argument(
        "--compare", action="store_true", help="Also train GRPO on the same seed and prompts, and plot both."
    )
    demo_parser.add_argument(
        "--threads", type=int, default=DEMO_TORCH_THREADS, help=f"Torch CPU threads (default: {DEMO_TORCH_THREADS})."
    )
    return parser


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if argv[:1] == ["train"]:
        # Everything after `train` belongs to TrlParser: YAML via --config, then flags overriding it.
        script_args, training_args, model_args = make_train_parser().parse_args_and_config(
            args=resolve_config_args(argv[1:])
        )
        trainer = train(script_args, training_args, model_args)
        # Finish trackers and destroy the process group: under torchrun/accelerate, a gloo group left to interpreter
        # shutdown can abort a rank at exit ("terminate called without an active exception").
        trainer.accelerator.end_training()
        return
    parsed = make_parser().parse_args(argv)
    if parsed.command == "recipes":
        print_recipes(parsed.name)
    elif parsed.command == "smoke":
        from .smoke import smoke

        exit_code = smoke(parsed.output_dir)
        if exit_code:
            sys.exit(exit_code)
    elif parsed.command == "eval":
        results = run_eval(parsed)
        print(format_table(results, parsed.k))
        Path(parsed.output).parent.mkdir(parents=True, exist_ok=True)
        with open(parsed.output, "w") as f:
            json.dump(results, f, indent=2)
        print(f"results written to {parsed.output}")
    else:
        import torch

        torch.set_num_threads(parsed.threads)
        print(run_demo(parsed.output_dir, parsed.max_steps, parsed.seed, parsed.compare))


if __name__ == "__main__":
    main()
