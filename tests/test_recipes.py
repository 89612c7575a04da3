"""The recipes shipped in trl_vcrl/recipes: they parse with `trl-vcrl train`'s parser, hold the paper's settings, every
key is commented with whether its value is the paper's or ours (as the README's table says), the prompt-length guard
fits the engine, and the GPU commands of the recipe headers and of the README start what the configs they name
describe (GPUs, processes, ports, lengths)."""

import re
import shlex
from enum import Enum
from pathlib import Path

import pytest
import yaml
from trl import get_peft_config

from trl_vcrl.cli import RECIPES_DIR, bundled_recipes, make_train_parser, resolve_config
from trl_vcrl.curriculum import normalized_variance

REPO_ROOT = Path(__file__).parent.parent
README = REPO_ROOT / "README.md"
RECIPES = sorted(RECIPES_DIR.glob("*.yaml"))
PAPER_RECIPES = ["qwen3_4b_base_vcrl.yaml", "qwen3_8b_base_vcrl.yaml"]
SERVER_RECIPES = [*PAPER_RECIPES, "qwen3_4b_base_grpo.yaml", "qwen3_4b_base_dapo_filter.yaml"]
LORA_RECIPE = "qwen3_0.6b_base_vcrl_lora.yaml"
# The node the server recipes are written for.
NODE_GPUS = 8
CURRICULUM_KEYS = {
    "kappa",
    "kappa_warmup",
    "kappa_warmup_steps",
    "reward_range",
    "efficient_sampling",
    "dynamic_sampling",
    "replay",
    "replay_bank_size",
    "replay_momentum",
    "replay_limit",
    "max_refill_rounds",
}


def parse(path: Path, *flags: str):
    # use_cpu: bf16 recipes are refused by TrainingArguments on a machine without a GPU otherwise.
    return make_train_parser().parse_args_and_config(args=["--config", str(path), "--use_cpu", "true", *flags])


def raw(name: str) -> dict:
    return yaml.safe_load((RECIPES_DIR / name).read_text())


def key_comment(name: str, key: str) -> str:
    """The comment block right above `key:` in recipe `name`."""
    lines = (RECIPES_DIR / name).read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
    comment = []
    while index > 0 and lines[index - 1].startswith("#"):
        index -= 1
        comment.insert(0, lines[index].lstrip("# "))
    return " ".join(comment)


# ---------------------------------------------------------------------------------------- shell commands, parsed


def shell_segments(text: str) -> list[list[str]]:
    """Simple commands of a shell text, each as its list of words: comment lines dropped, continuation lines joined,
    split at `&&`, `||`, `;`, `&` and `|`, redirections and leading keywords (`until`, `do`, ...) removed."""
    separators = ("&&", "||", ";", "&", "|")
    keywords = ("until", "while", "do", "done", "if", "then", "fi")
    segments = []
    for line in text.replace("\\\n", " ").splitlines():
        if line.strip().startswith("#"):
            continue
        current, skip_next = [], False
        for word in [*shlex.split(line), ";"]:
            if skip_next:  # the target of a redirection
                skip_next = False
                if not word.endswith(";"):
                    continue
                word = ";"
            if word in (">", ">>", "2>", "<"):
                skip_next = True
                continue
            if word.startswith((">", "2>")):  # 2>&1, >file
                continue
            bare = word.removesuffix(";")
            is_keyword = bare in keywords and not current
            if word in separators or word.endswith(";"):
                if bare and bare not in separators and not is_keyword:
                    current.append(bare)
                if current:
                    segments.append(current)
                current = []
            elif not is_keyword:
                current.append(word)
    return segments


def command_after(segments: list[list[str]], program: list[str]) -> tuple[dict, list[str]]:
    """The environment assignments and the arguments of the one command running `program` (a list of words)."""
    found = []
    for words in segments:
        env = {}
        while words and re.match(r"^[A-Z_]+=", words[0]):
            name, _, value = words[0].partition("=")
            env[name] = value
            words = words[1:]
        if words[: len(program)] == program:
            found.append((env, words[len(program) :]))
    assert len(found) == 1, f"expected one command running {program}, found {len(found)}"
    return found[0]


def resolve_path(word: str) -> Path:
    """A `--config_file` value: `$(trl-vcrl recipes NAME)` or a path relative to the repository."""
    match = re.fullmatch(r"\$\(trl-vcrl recipes (\S+)\)", word)
    return bundled_recipes()[match.group(1)] if match else REPO_ROOT / word


def gpus(env: dict) -> list[int]:
    return [int(index) for index in env["CUDA_VISIBLE_DEVICES"].split(",")]


def check_gpu_commands(text: str, name: str) -> None:
    """The server, health wait and training commands in `text` start what recipe `name` and the accelerate config
    they name expect: the model, the port, the engine length, disjoint GPUs filling the node, one process per GPU."""
    from trl.scripts.vllm_serve import make_parser as make_vllm_serve_parser

    script_args, training_args, model_args = parse(RECIPES_DIR / name)
    segments = shell_segments(text)

    serve_env, serve_words = command_after(segments, ["trl", "vllm-serve"])
    serve_args = make_vllm_serve_parser().parse_args_and_config(args=serve_words)[0]
    assert serve_args.model == model_args.model_name_or_path
    assert serve_args.data_parallel_size == 1  # dense models serve on several GPUs only with tensor parallelism
    assert len(gpus(serve_env)) == serve_args.tensor_parallel_size
    assert serve_args.port == training_args.vllm_server_port
    # Every prompt kept by the guard plus a full completion fits in the server's context.
    assert script_args.max_prompt_length + training_args.max_completion_length <= serve_args.max_model_len
    # The server runs in the background: the line that starts it ends with `&`.
    serve_line = next(line for line in text.splitlines() if "trl vllm-serve" in line)
    assert serve_line.rstrip().endswith("&")

    _, curl_words = command_after(segments, ["curl"])
    health_url = f"http://{training_args.vllm_server_host}:{training_args.vllm_server_port}/health"
    assert health_url in curl_words  # TRL's VLLMClient.check_server polls the same endpoint

    launch_env, launch = command_after(segments, ["accelerate", "launch"])
    accelerate_config = yaml.safe_load(resolve_path(launch[launch.index("--config_file") + 1]).read_text())
    processes = accelerate_config["num_processes"]
    if "--num_processes" in launch:
        processes = int(launch[launch.index("--num_processes") + 1])
    train_gpus = gpus(launch_env)
    assert processes == len(train_gpus)
    assert not set(train_gpus) & set(gpus(serve_env))
    assert sorted(train_gpus + gpus(serve_env)) == list(range(NODE_GPUS))
    module_args = launch[launch.index("-m") + 1 :]
    assert module_args[:3] == ["trl_vcrl.cli", "train", "--config"]
    assert Path(resolve_config(module_args[3])) == RECIPES_DIR / name

    rows_per_process = training_args.per_device_train_batch_size * training_args.steps_per_generation
    assert rows_per_process % training_args.num_generations == 0  # VCRL keeps whole groups per process
    assert rows_per_process * processes // training_args.num_generations == 28  # prompts per step


def readme_gpu_block() -> str:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [block for block in blocks if "trl vllm-serve" in block]
    return block


def test_bundled_recipes_are_the_server_recipes_and_the_lora_recipe():
    assert [path.name for path in RECIPES] == sorted([*SERVER_RECIPES, "qwen3_0.6b_base_vcrl_lora.yaml"])


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.name)
def test_recipe_parses_to_its_values(path):
    script_args, training_args, model_args = parse(path)
    parsed = {**vars(model_args), **vars(training_args), **vars(script_args)}
    for key, value in raw(path.name).items():
        got = parsed[key]
        if isinstance(got, Enum):
            got = got.value
        if key == "report_to":  # "none" becomes the empty list of integrations
            assert value == "none" and got == []
        elif key == "lora_target_modules" and len(value) == 1:  # ModelConfig unwraps a single module name
            assert got == value[0]
        else:
            assert got == value, key


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.name)
def test_every_key_is_commented(path):
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#"), "header comment"
    uncommented = [
        line
        for index, line in enumerate(lines)
        if line.strip()
        and not line.lstrip().startswith("#")
        and "#" not in line
        and not (index > 0 and lines[index - 1].lstrip().startswith("#"))
    ]
    assert uncommented == []
    # flat `key: value` lines only, so "the line above is a comment" is the comment of that key
    nested = [line for line in lines if line.strip() and not line.startswith("#") and not re.match(r"^\w+: ", line)]
    assert nested == []


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_paper_recipes_use_the_papers_model_data_schedule_and_sampling(name):
    script_args, training_args, model_args = parse(RECIPES_DIR / name)
    assert model_args.model_name_or_path == f"Qwen/Qwen3-{name.split('_')[1][0]}B-Base"
    assert script_args.dataset_name == "dapo-math-17k" and script_args.reward_funcs == ["accuracy"]
    assert training_args.max_steps == 500
    assert training_args.dynamic_sampling and training_args.replay
    schedule = training_args.get_kappa_schedule()
    assert [schedule(step) for step in (0, 19, 20, 499)] == [0.3, 0.3, 0.8, 0.8]
    assert (training_args.replay_momentum, training_args.replay_limit) == (0.9, 2)
    assert training_args.num_generations == 16 and training_args.learning_rate == 1e-6
    assert training_args.temperature == 1.0


def test_grpo_and_dapo_baselines_differ_from_vcrl_only_in_the_curriculum():
    vcrl = raw("qwen3_4b_base_vcrl.yaml")
    for name in ("qwen3_4b_base_grpo.yaml", "qwen3_4b_base_dapo_filter.yaml"):
        baseline = raw(name)
        shared = set(vcrl) - CURRICULUM_KEYS - {"output_dir"}
        assert {key: baseline.get(key) for key in shared} == {key: vcrl[key] for key in shared}, name
        assert baseline["output_dir"] != vcrl["output_dir"]

    _, grpo, _ = parse(RECIPES_DIR / "qwen3_4b_base_grpo.yaml")
    assert not grpo.dynamic_sampling and not grpo.replay


def test_dapo_filter_keeps_exactly_groups_with_mixed_rewards():
    _, args, _ = parse(RECIPES_DIR / "qwen3_4b_base_dapo_filter.yaml")
    assert args.dynamic_sampling and not args.replay and args.max_refill_rounds > 0
    schedule, G = args.get_kappa_schedule(), args.num_generations
    for step in (0, 20, 499):
        kept = [k for k in range(G + 1) if normalized_variance([1.0] * k + [0.0] * (G - k)) >= schedule(step)]
        assert kept == list(range(1, G))


def test_lora_colocate_recipe():
    script_args, args, model_args = parse(RECIPES_DIR / LORA_RECIPE)
    assert args.use_vllm and args.vllm_mode == "colocate"
    assert script_args.max_prompt_length + args.max_completion_length <= args.vllm_max_model_length
    peft_config = get_peft_config(model_args)
    assert (peft_config.r, peft_config.lora_alpha, peft_config.target_modules) == (32, 64, "all-linear")
    # dropout would make the training log-probs noisy against the rollout's and push tokens past the IS clip
    assert peft_config.lora_dropout == 0.0
    assert args.per_device_train_batch_size * args.steps_per_generation % args.num_generations == 0
    (command,) = [words for words in shell_segments(header(LORA_RECIPE)) if words[-3:-1] == ["train", "--config"]]
    assert command[:2] == ["CUDA_VISIBLE_DEVICES=0", "trl-vcrl"]
    assert Path(resolve_config(command[-1])) == RECIPES_DIR / LORA_RECIPE


def header(name: str) -> str:
    """The command lines of recipe `name`'s header (indented by three spaces after the `#`)."""
    lines = (RECIPES_DIR / name).read_text().splitlines()
    return "\n".join(line[4:] for line in lines if line.startswith("#   "))


@pytest.mark.parametrize("name", SERVER_RECIPES)
def test_header_commands_start_what_the_configs_describe(name):
    check_gpu_commands(header(name), name)


def test_readme_gpu_block_starts_what_the_configs_describe():
    block = readme_gpu_block()
    name = re.search(r"--config (\S+)", block).group(1)
    check_gpu_commands(block, resolve_config(name).rsplit("/", 1)[-1])
    # pasted as is, it finishes: the server is stopped after training, and the wait loop gives up when it dies
    assert "kill $SERVER_PID" in block and "|| break" in block


def test_commands_are_checked_against_the_configs():
    """The checker itself fails on a command that disagrees with the configs (one wrong value at a time)."""
    block = readme_gpu_block()
    name = resolve_config(re.search(r"--config (\S+)", block).group(1)).rsplit("/", 1)[-1]
    wrong = {
        "--max-model-len 5120": "--max-model-len 4096",  # no room for the prompt
        "--port 8000": "--port 8001",  # the trainer talks to 8000
        "CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6 ": "CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 ",  # a rank on the server's GPU
        "2>&1 &\n": "2>&1\n",  # the server in the foreground never returns
    }
    for right, bad in wrong.items():
        assert right in block, right
        with pytest.raises(AssertionError):
            check_gpu_commands(block.replace(right, bad, 1), name)


def test_recipes_ship_in_the_package_and_the_clone_path_points_there():
    assert (REPO_ROOT / "recipes").resolve() == RECIPES_DIR.resolve()
    assert sorted(bundled_recipes()) == sorted(
        [path.stem for path in RECIPES] + ["accelerate/fsdp2", "accelerate/zero3"]
    )
    for path in RECIPES:
        assert resolve_config(path.stem) == resolve_config(path.name) == str(path)
        assert resolve_config(f"recipes/{path.name}") == f"recipes/{path.name}"  # an existing file is taken as is


@pytest.mark.parametrize("name", [path.name for path in RECIPES])
def test_launch_settings_of_every_recipe(name):
    script_args, args, _ = parse(RECIPES_DIR / name)
    # checkpoints are bounded; each kept one carries its replay bank
    assert args.save_strategy == "steps" and args.save_total_limit == 2
    # base models: plain-text prompts, so generation stops at the model's own end-of-sequence token
    assert script_args.conversational is False
    assert script_args.max_prompt_length == 1024
    # chosen deliberately instead of TRL's sequence_mask, which drops whole long completions
    assert args.vllm_importance_sampling_mode == "token_truncate" and args.vllm_importance_sampling_clip_max == 3.0
    assert args.gradient_checkpointing


def test_accelerate_configs_agree_with_the_recipes():
    for name in ("zero3", "fsdp2"):
        config = yaml.safe_load(bundled_recipes()[f"accelerate/{name}"].read_text())
        assert config["num_processes"] == NODE_GPUS - 1  # the 8th GPU serves vLLM
    # transformers refuses FSDP's activation checkpointing together with the recipes' gradient_checkpointing
    fsdp = yaml.safe_load(bundled_recipes()["accelerate/fsdp2"].read_text())
    assert fsdp["fsdp_config"]["fsdp_activation_checkpointing"] is False


def paper_or_ours_table() -> list[tuple[list[str], str]]:
    """Rows of the README's paper-or-ours table: the recipe keys of a setting and `"paper"` or `"ours"`."""
    text = README.read_text()
    section = text[text.index("| setting | recipe keys |") :].split("\n\n", 1)[0]
    rows = []
    for line in section.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((re.findall(r"`(\w+)`", cells[1]), cells[3].split(":")[0].strip("* ")))
    return rows


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_paper_or_ours_is_said_the_same_in_readme_and_recipe(name):
    rows = paper_or_ours_table()
    assert len(rows) >= 15
    for keys, source in rows:
        assert source in ("paper", "ours"), (keys, source)
        for key in keys:
            comment = key_comment(name, key)
            assert f"({source}" in comment, (key, source, comment)
            assert f"({'ours' if source == 'paper' else 'paper'}" not in comment, (key, comment)
