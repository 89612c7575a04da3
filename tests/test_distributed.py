"""Two CPU processes under torchrun: same curriculum decisions and bank on both ranks, no hang on uneven drops,
and passing groups pooled across processes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("distributed_worker.py")


def run_two_ranks(tmp_path, scenario: str) -> list[dict]:
    tests_dir = WORKER.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(tests_dir.parent), str(tests_dir)])}  # fmt: skip
    with socket.socket() as probe:  # torchrun's --master_port 0 does not pick a free port: the ranks never meet
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
               str(WORKER), str(tmp_path), scenario]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
def test_two_processes_agree_and_do_not_hang(tmp_path):
    ranks = run_two_ranks(tmp_path, "uneven")
    assert ranks[0]["state"] == ranks[1]["state"]
    assert ranks[0]["decisions"] == ranks[1]["decisions"]
    assert ranks[0]["loss_rows"] == ranks[1]["loss_rows"] == [8, 8, 8, 8]
    # The drops really were uneven: in some step the ranks kept different numbers of their first-pass groups.
    kept_first_pass = [[sum(1 for c in chosen if c[0] == 0) for chosen in step] for step in ranks[0]["decisions"]]
    assert any(a != b for a, b in kept_first_pass)
    assert ranks[0]["state"]["replay_bank"]["entries"]


@pytest.mark.slow
def test_passing_groups_are_pooled_across_processes(tmp_path):
    """Rank 0's prompts always fail, rank 1's usually pass. The paper's procedure lets rank 1 send passing groups
    to the bank while rank 0 trains fallback groups; pooling moves them to rank 0 instead, and the rows that reach
    rank 0's loss (decoded and re-scored there) are the passing groups."""
    paper = run_two_ranks(tmp_path / "paper", "one_rank_fails_paper")
    assert any(s["fallback"] and s["surplus"] for s in paper[0]["selections"])  # the waste pooling removes
    assert all(s["moved"] == 0 for s in paper[0]["selections"])

    efficient = run_two_ranks(tmp_path / "efficient", "one_rank_fails_efficient")
    selections = efficient[0]["selections"]
    assert selections == efficient[1]["selections"] and efficient[0]["decisions"] == efficient[1]["decisions"]
    assert not any(s["fallback"] and s["surplus"] for s in selections)
    assert sum(s["moved"] for s in selections) > 0
    for rank in efficient:
        assert rank["loss_rows"] == [16] * 6
    # Every group rank 0 trained in a step without fallback passes kappa, although none of its own prompts can.
    for step, selection in enumerate(selections):
        if selection["fallback"] == 0:
            assert all(p >= 0.5 for p in efficient[0]["loss_group_p"][step])
