"""The accelerate recipes in recipes/accelerate, validated by accelerate and run with VCRL on 2 CPU processes (gloo).

* zero3.yaml runs as real DeepSpeed ZeRO-3 on CPU (DeepSpeed falls back to its CPU accelerator and gloo), here in
  server mode: every rank takes part in the parameter gathers of each weight sync, rank 0 alone pushes.
* fsdp2.yaml runs in colocate mode, one real engine per rank. accelerate 1.16 enables FSDP only on accelerator
  devices (state.py: MULTI_GPU, MULTI_NPU, ... not MULTI_CPU), so on CPU it trains as DDP: asserted, so that the day
  accelerate shards on CPU this test says so. FSDP2 sharding and TRL's FSDP2 weight-gathering sync are a GPU check.
"""

import json

import pytest
from vllm_support import HERE, REPO_ROOT, check_vcrl_run, find_free_port, python_bin, run_with_deadline

RECIPES = REPO_ROOT / "recipes" / "accelerate"


@pytest.mark.parametrize("name, kind", [("fsdp2.yaml", "FSDP"), ("zero3.yaml", "DEEPSPEED")])
def test_recipe_is_valid_accelerate_config(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    config = load_config_from_file(str(RECIPES / name))  # rejects unknown top-level keys
    assert config.distributed_type.value == kind
    args = launch_command_parser().parse_args(["--config_file", str(RECIPES / name), "train.py"])
    _validate_launch_command(args)  # fills the launch arguments from the file, rejects contradictions
    if kind == "FSDP":
        assert args.use_fsdp and str(args.fsdp_version) == "2"
    else:
        assert args.use_deepspeed and int(args.zero_stage) == 3


@pytest.mark.parametrize(
    "name, mode, distributed_type",
    [("zero3.yaml", "server", "DistributedType.DEEPSPEED"), ("fsdp2.yaml", "colocate", "DistributedType.MULTI_CPU")],
)
def test_recipe_on_two_cpu_processes(name, mode, distributed_type, tiny_model_dir, tmp_path, request):
    steps = 3
    command = [
        python_bin("accelerate"), "launch", "--config_file", str(RECIPES / name), "--num_processes", "2",
        "--mixed_precision", "no", "--main_process_ip", "127.0.0.1", "--main_process_port", str(find_free_port()),
        str(HERE / "multi_rank_worker.py"), "--model", tiny_model_dir, "--out", str(tmp_path), "--steps", str(steps),
    ]  # fmt: skip
    if mode == "server":
        command += ["--base-url", request.getfixturevalue("live_server").base_url]
    rc, log = run_with_deadline(command, timeout=420, log_path=tmp_path / "launch.log")
    assert rc != 124, f"accelerate launch hung (killed after 420 s):\n{log[-4000:]}"
    assert rc == 0, f"accelerate launch failed with {rc}:\n{log[-4000:]}"
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for run in ranks:
        assert run["world_size"] == 2 and run["global_step"] == steps
        assert run["distributed_type"] == distributed_type
        assert run["zero_stage"] == (3 if name == "zero3.yaml" else None)
        check_vcrl_run(run, steps=steps, rows=16)
    assert ranks[0]["vcrl_logs"] == ranks[1]["vcrl_logs"]
    assert ranks[0]["curriculum_state"] == ranks[1]["curriculum_state"]
