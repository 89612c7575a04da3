"""Server mode: a real `vllm serve` process on 127.0.0.1 (session fixture `vllm_server`), TRL's real `VLLMClient`
and generation calls. Only the CUDA-only weight transfer is replaced, by `WeightTransferDouble` (fixture
`weight_double`), which still delivers the weights to the server: training here is on-policy, as on a GPU.
"""

import json
import time

import pytest
from vllm_support import (
    HERE,
    Recorder,
    build_trainer,
    check_vcrl_run,
    find_free_port,
    python_bin,
    run_with_deadline,
    vcrl_config,
)

STEPS = 3


def _server_config(output_dir, base_url, max_steps=STEPS):
    return vcrl_config(str(output_dir), vllm_mode="server", vllm_server_base_url=base_url, vllm_server_timeout=30,
                       max_steps=max_steps)  # fmt: skip


def _max_logprob_gap(model, client, prompt=(1, 50, 60, 70)):
    """Largest |server logprob - `model`'s logprob| over tokens the server samples for `prompt`."""
    import torch

    client.reset_prefix_cache()
    out = client.generate([list(prompt)], n=2, max_tokens=6, temperature=1.0, logprobs=0)
    gap = 0.0
    for completion, logprobs in zip(out["completion_ids"], out["logprobs"], strict=True):
        with torch.no_grad():
            logits = model(torch.tensor([list(prompt) + completion])).logits.log_softmax(-1)[0]
        for i, token in enumerate(completion):
            gap = max(gap, abs(logits[len(prompt) - 1 + i, token].item() - logprobs[i][0]))
    return gap


def test_client_against_real_server(live_server):
    from trl.generation.vllm_client import VLLMClient

    client = VLLMClient(base_url=live_server.base_url, connection_timeout=30)
    out = client.generate([[1, 50, 60, 70], [1, 80, 90]], n=4, max_tokens=8, temperature=1.0, logprobs=0)
    assert out["prompt_ids"] == [[1, 50, 60, 70], [1, 80, 90]]
    assert len(out["completion_ids"]) == 8 and all(1 <= len(c) <= 8 for c in out["completion_ids"])
    assert [len(lp) for lp in out["logprobs"]] == [len(c) for c in out["completion_ids"]]
    assert client.get_server_info()["weight_transfer_config"] == {"backend": "nccl"}  # as `trl vllm-serve` sets it
    with pytest.raises(NotImplementedError, match="CUDA"):  # the real weight transfer: what the double replaces
        client.init_communicator(device="cpu")


def test_weight_double_delivers_weights(live_server, weight_double, tiny_model_dir):
    """The double is faithful: after a push the server samples with the pushed weights, not the initial ones."""
    from transformers import AutoModelForCausalLM
    from trl.generation.vllm_client import VLLMClient

    from trl_vcrl.testing import build_tiny_model_and_tokenizer

    client = VLLMClient(base_url=live_server.base_url, connection_timeout=30)
    client.init_communicator(device="cpu")
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    other, _ = build_tiny_model_and_tokenizer(seed=5)
    try:
        client.update_model_params(other)
        assert _max_logprob_gap(other, client) < 0.02 < 0.05 < _max_logprob_gap(initial, client)
    finally:
        client.update_model_params(initial)  # leave the session server as it started
    assert _max_logprob_gap(initial, client) < 0.02 and weight_double.pushes == 2


def test_vcrl_server_mode(live_server, weight_double, tiny_model_dir, tmp_path):
    """Refill rounds through the real server: several generation calls per step, one weight push per step."""
    args = _server_config(tmp_path, live_server.base_url)
    trainer = build_trainer(tiny_model_dir, args)
    recorder = Recorder(trainer)
    trainer.train()
    check_vcrl_run(recorder.summary(), steps=STEPS, rows=args.per_device_train_batch_size)
    assert weight_double.pushes == STEPS


def test_two_trainer_processes_one_server(live_server, tiny_model_dir, tmp_path):
    """`torchrun --nproc_per_node 2` (gloo) against one server, rank 0's groups all dropped, rank 1's mostly kept."""
    command = [
        python_bin("torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(find_free_port()), str(HERE / "multi_rank_worker.py"),
        "--base-url", live_server.base_url, "--model", tiny_model_dir, "--out", str(tmp_path), "--steps", str(STEPS),
    ]  # fmt: skip
    rc, log = run_with_deadline(command, timeout=300, log_path=tmp_path / "torchrun.log")
    assert rc != 124, f"two-process run hung (killed after 300 s):\n{log[-4000:]}"
    assert rc == 0, f"torchrun failed with {rc}:\n{log[-4000:]}"
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for run in ranks:
        assert run["world_size"] == 2 and run["global_step"] == STEPS
        check_vcrl_run(run, steps=STEPS, rows=16)
    # Generation is collective: both ranks make the same calls with the same sizes, and take the same decisions.
    assert [(g["step"], g["rows"]) for g in ranks[0]["generations"]] == [
        (g["step"], g["rows"]) for g in ranks[1]["generations"]
    ]
    assert ranks[0]["vcrl_logs"] == ranks[1]["vcrl_logs"]
    assert ranks[0]["curriculum_state"] == ranks[1]["curriculum_state"]
    assert ranks[0]["curriculum_state"]["replay_bank"]["entries"], "the bank never filled"
    assert (ranks[0]["pushes"], ranks[1]["pushes"]) == (STEPS, 0), "only rank 0 pushes weights to the server"


def test_server_dying_mid_run_raises_clear_error(live_server, weight_double, tiny_model_dir, tmp_path):
    """The server is SIGKILLed after the first optimizer step (this is the session server: keep this test last).

    TRL's client retries with back-off (urllib3 Retry: 5 tries, backoff factor 2: 0+4+8+16+32 s), then raises a
    `requests.ConnectionError` naming the server's port and endpoint: bounded, with a clear error, no hang.
    """
    import requests
    from transformers import TrainerCallback

    class KillAfterFirstStep(TrainerCallback):
        killed_at = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                live_server.kill()
                KillAfterFirstStep.killed_at = time.monotonic()

    trainer = build_trainer(tiny_model_dir, _server_config(tmp_path, live_server.base_url, max_steps=4),
                            callbacks=[KillAfterFirstStep()])  # fmt: skip
    with pytest.raises(requests.exceptions.ConnectionError, match=rf"port={live_server.port}.*Connection refused"):
        trainer.train()
    assert time.monotonic() - KillAfterFirstStep.killed_at < 120
