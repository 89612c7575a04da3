"""The accelerate recipes in recipes/accelerate: both parsed and validated by accelerate; fsdp2.yaml run for real.

* fsdp2.yaml runs VCRL under `accelerate launch` on 2 CPU processes (gloo), one real vLLM colocate engine per rank.
  accelerate 1.16 turns the FSDP setting on only for accelerator devices (state.py: FSDP is chosen for MULTI_GPU,
  MULTI_NPU, ... but not MULTI_CPU), so on CPU this runs as DDP: asserted below, so that the day accelerate shards on
  CPU this test says so. FSDP2 sharding and its weight-gathering sync path are a GPU check.
* zero3.yaml cannot run here: accelerate selects DeepSpeed only off-CPU, and DeepSpeed ZeRO-3 needs an accelerator
  (CUDA) for its partitioned parameters. It is parsed and validated only; running it is a GPU check.
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


def test_fsdp2_recipe_on_two_cpu_processes(tiny_model_dir, tmp_path):
    steps = 3
    command = [
        python_bin("accelerate"), "launch", "--config_file", str(RECIPES / "fsdp2.yaml"), "--num_processes", "2",
        "--mixed_precision", "no", "--main_process_ip", "127.0.0.1", "--main_process_port", str(find_free_port()),
        str(HERE / "multi_rank_worker.py"), "--model", tiny_model_dir, "--out", str(tmp_path), "--steps", str(steps),
    ]  # fmt: skip
    rc, log = run_with_deadline(command, timeout=420, log_path=tmp_path / "launch.log")
    assert rc != 124, f"accelerate launch hung (killed after 420 s):\n{log[-4000:]}"
    assert rc == 0, f"accelerate launch failed with {rc}:\n{log[-4000:]}"
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for run in ranks:
        assert run["world_size"] == 2 and run["global_step"] == steps
        assert run["distributed_type"] == "DistributedType.MULTI_CPU", "FSDP on CPU works now: assert FSDP here"
        check_vcrl_run(run, steps=steps, rows=16)
    assert ranks[0]["vcrl_logs"] == ranks[1]["vcrl_logs"]
    assert ranks[0]["curriculum_state"] == ranks[1]["curriculum_state"]
