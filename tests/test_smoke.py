"""`trl-vcrl smoke`, the GPU smoke test: it skips cleanly without a GPU, its checks reject runs that break them, and on
a machine with a CUDA GPU (and vLLM, reasoning-gym and the SmolLM2 wheel installed) it runs for real."""

import copy

import pytest
import torch

from trl_vcrl.cli import main
from trl_vcrl.smoke import SMOKE_STEPS, SmokeFailure, check_training, count_requests, run_training, smoke, smoke_config
from trl_vcrl.testing import build_tiny_model, build_tiny_tokenizer


@pytest.mark.skipif(torch.cuda.is_available(), reason="the skip path needs a machine without a GPU")
def test_skips_cleanly_without_a_gpu(tmp_path, capsys):
    main(["smoke", "--output_dir", str(tmp_path / "smoke")])  # returns: exit code 0
    assert capsys.readouterr().out == "SKIP: no CUDA GPU visible; the smoke test checks vLLM on GPUs\n"
    assert not (tmp_path / "smoke").exists()  # nothing started


def passing_rows() -> list[dict]:
    """Per-step log rows shaped like trainer_state.json's, with values a healthy run logs."""
    return [
        {
            "step": step + 1,
            "vcrl/kappa": 0.3 if step < 2 else 0.8,
            "vcrl/p_mean": 0.4,
            "vcrl/kept_fraction": 0.5,
            "vcrl/rollouts_per_trained_group": 1.5,
            "vcrl/groups_from_bank": 1.0,
            "vcrl/groups_from_refill": 1.0,
            "vcrl/groups_from_fallback": 0.0,
            "sampling/sampling_logp_difference/mean": 0.02,
            "completions/clipped_ratio": 0.25,
        }
        for step in range(SMOKE_STEPS)
    ]


@pytest.mark.parametrize(
    "step, key, value, message",
    [
        (2, "vcrl/kappa", 0.3, "kappa per step"),  # the warm-up did not end
        (1, "vcrl/kept_fraction", 1.5, "outside"),
        (0, "vcrl/rollouts_per_trained_group", 0.5, "fewer rollouts"),
        (3, "sampling/sampling_logp_difference/mean", 0.9, "did not get the trained weights"),
    ],
)
def test_checks_reject_a_broken_run(step, key, value, message):
    assert check_training(passing_rows())[0] == "kappa per step [0.3, 0.3, 0.8, 0.8]"
    rows = copy.deepcopy(passing_rows())
    rows[step][key] = value
    with pytest.raises(SmokeFailure, match=message):
        check_training(rows)
    rows = [dict(row, **{"completions/clipped_ratio": 1.0}) for row in passing_rows()]
    with pytest.raises(SmokeFailure, match="every completion was cut"):
        check_training(rows)
    with pytest.raises(SmokeFailure, match="3 logged steps"):
        check_training(passing_rows()[:3])


def test_smoke_config_trains_and_logs_what_the_checks_read(tmp_path):
    """The smoke phase's own config and subprocess, on CPU: the tiny model instead of SmolLM2 and transformers'
    generation instead of vLLM (the only changes). Its real log rows carry every metric the checks read except the
    vLLM log-prob difference, which only a vLLM run logs."""
    model_dir = tmp_path / "tiny-model"
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(tokenizer, seed=0).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    config = smoke_config(str(model_dir), tmp_path / "run", "colocate")
    config |= {"use_vllm": False, "use_cpu": True, "bf16": False, "dtype": "float32"}
    rows = run_training(config, "", tmp_path / "train.log")
    vllm_only = "sampling/sampling_logp_difference/mean"
    assert [set(row) >= set(passing_rows()[0]) - {vllm_only} for row in rows] == [True] * SMOKE_STEPS
    for row in rows:
        row[vllm_only] = 0.0
    assert check_training(rows)[0] == "kappa per step [0.3, 0.3, 0.8, 0.8]"


def test_counts_answered_weight_updates_in_the_access_log(tmp_path):
    log = tmp_path / "vllm-serve.log"
    log.write_text(
        'INFO:     127.0.0.1:50022 - "POST /init_weight_transfer_engine HTTP/1.1" 200 OK\n'
        'INFO:     127.0.0.1:50024 - "POST /finish_weight_update HTTP/1.1" 200 OK\n'
        'INFO:     127.0.0.1:50026 - "POST /finish_weight_update HTTP/1.1" 500 Internal Server Error\n'
        'INFO:     127.0.0.1:50028 - "POST /finish_weight_update HTTP/1.1" 200 OK\n'
    )
    assert count_requests(log, "/finish_weight_update") == 2
    assert count_requests(log, "/init_weight_transfer_engine") == 1


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_smoke_on_this_gpu(tmp_path, capsys):
    exit_code, printed = smoke(str(tmp_path)), capsys.readouterr().out
    assert exit_code == 0 and "PASS colocate" in printed, printed
