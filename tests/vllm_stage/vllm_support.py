"""Helpers of the vLLM test stage: the server process, one CPU-only vLLM adjustment, the weight-transfer test double,
a recorder of what the trainer does with vLLM, and the checks every VCRL run must pass.

What is real and what is not:

* Colocate mode is real end to end: TRL builds a `vllm.LLM` in the trainer process, generates with it and pushes
  the training weights into it with its own `sync_weights`.
* Server mode is real except the weight transport: a real `vllm serve` process started with `trl vllm-serve`'s
  command line, TRL's real `VLLMClient` and generation calls. Only the NCCL part of the weight sync (CUDA only) is
  replaced, by `WeightTransferDouble`.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent

TEST_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",  # with 2 threads tiny-model step times swing 50x on 2-core machines
    "TOKENIZERS_PARALLELISM": "false",
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache per engine
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # do not pin threads on a 2-core machine shared with the trainer
    "VLLM_WORKER_MULTIPROC_METHOD": "fork",  # the server's engine process inherits serve_cpu.py's adjustment
    "VLLM_NO_USAGE_STATS": "1",
    # vLLM's compile-cache key does not see `keep_vllm_cpu_weights_reloadable`'s kernel choice: a graph compiled
    # without it breaks an engine with it ("self and mat2 must have the same dtype"), so use a cache of our own.
    "VLLM_CACHE_ROOT": os.path.join(os.path.expanduser("~"), ".cache", "trl-vcrl-tests", "vllm"),
}

KAPPA = 0.8  # kept groups of G = 8 binary rewards need 3 <= k <= 5
MAX_ON_POLICY_GAP = 0.1  # nats/token between trainer and vLLM logprobs: ~0.005 in sync, ~0.6-1.0 with stale weights


def apply_test_env(env: dict | None = None) -> dict:
    """Fill `TEST_ENV` into `env` (default `os.environ`) without overriding what the caller set."""
    env = os.environ if env is None else env
    for key, value in TEST_ENV.items():
        env.setdefault(key, value)
    return env


def keep_vllm_cpu_weights_reloadable() -> None:
    """Make vLLM-CPU keep its linear weights as plain, reloadable parameters (CPU only, not needed on GPUs).

    On CPUs with oneDNN (AVX-512), vLLM-CPU repacks every linear weight into a oneDNN handle after loading and leaves
    `layer.weight` without a `weight_loader`: TRL's colocate `sync_weights` then fails with `AttributeError:
    'Parameter' object has no attribute 'weight_loader'`, and vLLM's `reload_weights` leaves the tied `lm_head` on
    its stale packed copy. Without oneDNN, vLLM-CPU uses `torch.nn.functional.linear` on `layer.weight`, so loaded
    weights reach the computation. Must run before an engine is built in the process (`serve_cpu.py` for the server).
    """
    import vllm._custom_ops as ops

    ops._supports_onednn = False


def save_tiny_model(path: str | os.PathLike) -> str:
    """The tiny model of `trl_vcrl.testing` (2-layer Qwen2, head size 32, ChatML tokenizer) saved to `path`: vLLM
    loads a directory."""
    from trl_vcrl.testing import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer(seed=0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


# ----------------------------------------------------------------------------------------------------------------------
# Data and reward with known variance
# ----------------------------------------------------------------------------------------------------------------------


def make_dataset(n: int, pattern: tuple[str, ...] = ("var", "const")):
    """Conversational prompts whose kind ("var" or "const") is written in the prompt and in a `kind` column.

    With `parity_reward`, "const" prompts score 1.0 on every completion (p = 0: VCRL always drops them, so refill
    rounds happen), "var" prompts score a fair coin per completion (the parity of its token IDs).
    """
    from datasets import Dataset

    kinds = [pattern[i % len(pattern)] for i in range(n)]
    prompts = [[{"role": "user", "content": f"[{kind}] What is {i} + {i % 7}?"}] for i, kind in enumerate(kinds)]
    return Dataset.from_dict({"prompt": prompts, "kind": kinds})


def parity_reward(completions, completion_ids, kind, **kwargs):
    return [1.0 if k == "const" else float(sum(ids) % 2) for ids, k in zip(completion_ids, kind, strict=True)]


def binary_p(k: int, n: int) -> float:
    """VCRL's normalised variance for k correct of n (paper closed form), written independently of `trl_vcrl`."""
    return 4 * k * (n - k) / (n * n if n % 2 == 0 else n * n - 1)


# ----------------------------------------------------------------------------------------------------------------------
# Trainers
# ----------------------------------------------------------------------------------------------------------------------


def vcrl_config(output_dir: str, **overrides):
    """A `VCRLConfig` for the tiny model on CPU with vLLM colocate; tests override what they exercise."""
    from trl_vcrl import VCRLConfig

    kwargs = dict(
        output_dir=output_dir,
        use_cpu=True,
        bf16=False,
        beta=0.0,
        per_device_train_batch_size=16,  # 2 groups of G = 8 per process
        num_generations=8,
        max_completion_length=8,
        max_steps=3,
        learning_rate=1e-2,  # large on purpose: a stale engine shows up as a large trainer/vLLM logprob gap
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
        use_vllm=True,
        vllm_mode="colocate",
        vllm_enable_sleep_mode=False,  # not supported by vLLM-CPU
        vllm_max_model_length=128,
        vllm_importance_sampling_mode="token_truncate",
        kappa_schedule=[f"0:{KAPPA}"],
        max_refill_rounds=12,  # enough that the batch practically never needs fallback groups
    )
    kwargs.update(overrides)
    return VCRLConfig(**kwargs)


def build_trainer(model_dir: str, args, dataset=None, **kwargs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_vcrl import VCRLTrainer

    return VCRLTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        reward_funcs=parity_reward,
        args=args,
        train_dataset=dataset if dataset is not None else make_dataset(400),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        **kwargs,
    )


def release_trainer(trainer) -> None:
    """Tear down a colocate trainer so that the next one in this process starts clean.

    TRL's colocate init sets RANK/LOCAL_RANK/WORLD_SIZE/MASTER_* and vLLM initialises a world-size-1 process group; an
    engine garbage-collected late destroys that group under the next trainer. So drop the engine, destroy vLLM's
    groups, restore the environment and reset accelerate's singletons, deterministically.
    """
    from accelerate.state import AcceleratorState, GradientState, PartialState
    from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

    trainer.vllm_generation.llm = None
    del trainer
    gc.collect()
    destroy_model_parallel()
    destroy_distributed_environment()
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)
    AcceleratorState._reset_state(True)
    PartialState._reset_state()
    GradientState._reset_state()
    gc.collect()


# ----------------------------------------------------------------------------------------------------------------------
# Recording what the trainer does with vLLM, and the checks on it
# ----------------------------------------------------------------------------------------------------------------------


class Recorder:
    """Wraps four calls of one trainer (instance attributes, the real call underneath) and records, per optimizer step:

    * `vllm_generation.sync_weights`: each weight sync into the engine / server.
    * `vllm_generation.generate`: each generation call, and whether the prompts that come back (in server mode the
      server's echo after TRL's per-process slicing) are exactly the ones this process sent.
    * `_generate_and_score_completions`: the batch VCRL assembled (rows still in groups of G, before TRL shuffles
      them). Each group's rewards are recomputed from its tokens (prompt text -> kind, completion IDs -> parity),
      independently of the trainer, and its `p` recorded.
    * `compute_loss`: the batch the loss sees. For each: the row count, and the importance-sampling keys checked row
      by row: present, shaped like the completion mask (or (B, 1) at sequence level), the ratio equal to the one
      recomputed from the row's own old/sampling logprobs, and the largest old/sampling gap (small only if vLLM
      sampled with the trainer's current weights and every row kept its own logprobs through the merge).
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.syncs: list[int] = []
        self.generations: list[dict] = []
        self.groups: list[dict] = []
        self.loss_batches: list[dict] = []
        vg = trainer.vllm_generation
        real_sync, real_generate = vg.sync_weights, vg.generate
        real_batch, real_loss = trainer._generate_and_score_completions, trainer.compute_loss

        def sync_weights():
            self.syncs.append(trainer.state.global_step)
            return real_sync()

        def generate(prompts, images, num_generations, profiler=None):
            out = real_generate(prompts, images, num_generations, profiler)
            echoed = [list(p) for p in out[0]] == [list(p) for p in prompts]
            self.generations.append({"step": trainer.state.global_step, "rows": len(prompts), "slice_ok": echoed})
            return out

        def generate_and_score(inputs):
            batch = real_batch(inputs)
            if trainer.model.training:
                self._record_groups(batch)
            return batch

        def compute_loss(model, inputs, *args, **kwargs):
            self._record_loss_batch(inputs)
            return real_loss(model, inputs, *args, **kwargs)

        vg.sync_weights, vg.generate = sync_weights, generate
        trainer._generate_and_score_completions, trainer.compute_loss = generate_and_score, compute_loss

    def _record_groups(self, batch: dict) -> None:
        G, tokenizer = self.trainer.num_generations, self.trainer.processing_class
        for start in range(0, len(batch["prompt_ids"]), G):
            rows = range(start, start + G)
            prompts = {tuple(batch["prompt_ids"][r][batch["prompt_mask"][r].bool()].tolist()) for r in rows}
            text = tokenizer.decode(next(iter(prompts)))
            completions = [batch["completion_ids"][r][batch["completion_mask"][r].bool()].tolist() for r in rows]
            rewards = parity_reward(None, completions, ["const" if "[const]" in text else "var"] * G)
            k = int(sum(rewards))
            self.groups.append(
                {"step": self.trainer.state.global_step, "one_prompt": len(prompts) == 1, "k": k, "p": binary_p(k, G)}
            )

    def _record_loss_batch(self, inputs: dict) -> None:
        import torch

        mask = inputs["completion_mask"].float()
        record = {"step": self.trainer.state.global_step, "rows": len(mask)}
        keys = ("old_per_token_logps", "sampling_per_token_logps", "importance_sampling_ratio")
        record["is_keys"] = [k for k in keys if k in inputs]
        if len(record["is_keys"]) == len(keys):
            old, sampling, got = (inputs[k].detach().float() for k in keys)
            diff = torch.nan_to_num((old - sampling) * mask, nan=0.0)
            args = self.trainer.args
            low, high = args.vllm_importance_sampling_clip_min, args.vllm_importance_sampling_clip_max
            sequence_level = args.vllm_importance_sampling_mode.startswith("sequence")
            if sequence_level:
                diff = diff.sum(-1, keepdim=True)
            ratio = torch.exp(diff)  # TRL's formulas (grpo_trainer.py), recomputed from the row's own logprobs
            if args.vllm_importance_sampling_mode.endswith("truncate"):
                ratio = ratio.clamp(min=low, max=high)
            else:
                low, high = -math.inf if low is None else low, math.inf if high is None else high
                ratio = ratio.masked_fill((ratio < low) | (ratio > high), 0.0)
            expected_shape = (len(mask), 1) if sequence_level else tuple(mask.shape)
            record["shapes_ok"] = old.shape == sampling.shape == mask.shape and tuple(got.shape) == expected_shape
            record["ratio_err"] = float((got - ratio).abs().max()) if record["shapes_ok"] else float("inf")
            record["logp_gap"] = float(((old - sampling).abs() * mask).nan_to_num(0.0).max())
        self.loss_batches.append(record)

    def summary(self) -> dict:
        """What was recorded plus the trainer's `vcrl/*` logs: JSON-able, for per-rank files."""
        logs = [
            {k: v for k, v in row.items() if k.startswith("vcrl/") or k == "step"}
            for row in self.trainer.state.log_history
            if "vcrl/kappa" in row
        ]
        return {
            "syncs": self.syncs,
            "generations": self.generations,
            "groups": self.groups,
            "loss_batches": self.loss_batches,
            "vcrl_logs": logs,
        }


def check_vcrl_run(run: dict, steps: int, rows: int, G: int = 8, kappa: float = KAPPA) -> None:
    """The VCRL-with-vLLM invariants on a `Recorder.summary()`."""
    per_step = Counter(g["step"] for g in run["generations"])
    assert Counter(run["syncs"]) == {step: 1 for step in range(steps)}, (
        f"weights must reach vLLM once per optimizer step, not once per generation call: syncs at steps "
        f"{run['syncs']}, generation calls per step {dict(per_step)}"
    )
    assert sum(per_step.values()) > steps, f"no refill round happened: generation calls per step {dict(per_step)}"
    assert all(g["slice_ok"] for g in run["generations"]), "vLLM returned completions of other prompts (wrong slice)"
    assert len(run["loss_batches"]) == steps
    for batch in run["loss_batches"]:
        assert batch["rows"] == rows, f"step {batch['step']}: the loss saw {batch['rows']} rows, not {rows}"
        assert len(batch["is_keys"]) == 3, f"step {batch['step']}: importance-sampling keys missing: {batch}"
        assert batch["shapes_ok"] and batch["ratio_err"] < 1e-5, f"step {batch['step']}: IS keys misaligned: {batch}"
        assert batch["logp_gap"] < MAX_ON_POLICY_GAP, (
            f"step {batch['step']}: vLLM sampled with weights other than the trainer's (gap {batch['logp_gap']:.3f} "
            f"nats): the weights did not reach the engine, or rows and logprobs got misaligned in the merge"
        )
    # A log row's "step" is the step after the update; groups were recorded while global_step was one less.
    fallback = {row["step"] - 1 for row in run["vcrl_logs"] if row["vcrl/groups_from_fallback"] > 0}
    assert len(run["groups"]) == steps * rows // G
    assert all(g["one_prompt"] for g in run["groups"]), "a group of the assembled batch mixes prompts"
    low = [g for g in run["groups"] if g["p"] < kappa and g["step"] not in fallback]
    assert not low, f"groups below kappa={kappa} reached the loss: {low}"


# ----------------------------------------------------------------------------------------------------------------------
# The server process
# ----------------------------------------------------------------------------------------------------------------------


def find_free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def trl_serve_command(model_dir: str, host: str, port: int) -> list[str]:
    """`trl vllm-serve --model DIR --host H --port P --max_model_len 256`, as TRL builds it, run through `serve_cpu.py`.

    TRL's `trl vllm-serve` execs `python -m vllm.entrypoints.cli.main serve ...`; the same arguments go to
    `serve_cpu.py`, which applies `keep_vllm_cpu_weights_reloadable` and then runs vLLM's unmodified CLI.
    """
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    command = build_command(
        ScriptArguments(model=model_dir, host=host, port=port, max_model_len=256, log_level="warning")
    )
    index = command.index("-m")
    assert command[index + 1] == "vllm.entrypoints.cli.main", command
    return [command[0], str(HERE / "serve_cpu.py"), *command[index + 2 :]]


class ServerStartError(RuntimeError):
    """The server did not become healthy: it exited, or it was not up within the bounded wait."""


class VLLMServer:
    """A server subprocess on 127.0.0.1 with a bounded start-up wait and clean teardown.

    Port: `preferred_port` if free, else one the kernel picks. Start-up: `/health` is polled until `startup_timeout`;
    if the process exits first or time runs out, its process group is killed and `ServerStartError` says which, with
    the tail of its log. `command_factory(host, port)` builds the command (default: `trl_serve_command`).
    """

    def __init__(self, model_dir, log_dir, preferred_port=None, startup_timeout=300.0, command_factory=None):
        self.log_dir = Path(log_dir)
        self.preferred_port = preferred_port
        self.startup_timeout = startup_timeout
        self.command_factory = command_factory or (lambda host, port: trl_serve_command(model_dir, host, port))
        self.env = apply_test_env(dict(os.environ))
        self.env["VLLM_SERVER_DEV_MODE"] = "1"  # what `trl vllm-serve` sets: weight-sync and cache endpoints
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self.startup_seconds: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> VLLMServer:
        if self.preferred_port and port_is_free(self.preferred_port):
            self.port = self.preferred_port
        else:
            self.port = find_free_port()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"server_{self.port}.log"
        started = time.monotonic()
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                self.command_factory("127.0.0.1", self.port), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=self.env, cwd=str(REPO_ROOT),
                start_new_session=True,  # own process group: teardown reaches the engine-core process too
            )  # fmt: skip
        try:
            self._wait_until_healthy()
        except ServerStartError:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def health(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not self.health():
            if not self.alive:
                raise ServerStartError(
                    f"server exited with code {self.process.returncode} before it was healthy at {self.base_url} "
                    f"(log {self.log_path}):\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"server not healthy at {self.base_url}/health after {self.startup_timeout:.0f} s; killed "
                    f"(log {self.log_path}):\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """A crash: SIGKILL to the whole process group, no clean shutdown."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        self.kill()  # the engine core may outlive the API server: make sure nothing of the group is left


# ----------------------------------------------------------------------------------------------------------------------
# Test double for the CUDA-only weight transfer of server mode
# ----------------------------------------------------------------------------------------------------------------------


class WeightTransferDouble:
    """Test double for the two NCCL-only methods of `trl.generation.vllm_client.VLLMClient`.

    On CPU the real `VLLMClient.init_communicator` raises `NotImplementedError` (vLLM's weight-transfer engine is
    NCCL, CUDA only) and `update_named_params` broadcasts over that NCCL group. `install()` replaces exactly these two
    methods, at class level, in this process; they imitate the real protocol:

    * `init_communicator(device)`: the real HTTP pre-flight (`GET /server_info`: the server must have a
      weight-transfer engine; `GET /get_world_size`), then, instead of the NCCL rendezvous
      (`POST /init_weight_transfer_engine`), sets a stub communicator.
    * `update_named_params(metadata, named_params)`: consumes TRL's parameter iterator completely (gathers, PEFT
      merge/unmerge and collectives happen as for real), checks each tensor against the announced name and shape,
      and, instead of the NCCL broadcast + `POST /update_weights`, writes the tensors to a safetensors file that the
      server loads with vLLM's own `reload_weights` (dev endpoint `POST /collective_rpc`). The real
      `POST /start_weight_update` / `POST /finish_weight_update` calls around it are kept.

    So the server samples with the trainer's weights, as on a GPU. Everything else (`VLLMGeneration.sync_weights`,
    `reset_prefix_cache`, generation) is TRL's and vLLM's real code. `pushes` counts the weight updates.
    """

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = Path(workdir)
        self.pushes = 0
        self._saved = {}

    def install(self) -> WeightTransferDouble:
        from safetensors.torch import save_file
        from trl.generation.vllm_client import VLLMClient

        double = self

        def init_communicator(client, device=0):
            if client.get_server_info()["weight_transfer_config"] is None:
                raise RuntimeError(f"The vLLM server at {client.base_url} has no weight-transfer engine.")
            assert client.get_world_size() >= 1
            client.communicator = _CommunicatorStub()

        def update_named_params(client, metadata, named_params):
            assert client.communicator is not None, "update_named_params called before init_communicator"
            tensors = {}
            for (name, _, shape), (streamed, tensor) in zip(metadata, named_params, strict=True):
                assert (name, list(shape)) == (streamed, list(tensor.shape)), (name, shape, streamed, tensor.shape)
                tensors[name] = tensor.detach().to("cpu", copy=True).contiguous()
            if not client._updating_weights:
                client._start_weight_update()
            target = double.workdir / "pushed_weights"
            target.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(target / "model.safetensors"))
            rpc = {"method": "reload_weights", "kwargs": {"weights_path": str(target)}}
            client._post(f"{client.base_url}/collective_rpc", json=rpc)
            if not client._updating_weights:
                client._finish_weight_update()
            double.pushes += 1

        self._saved = {name: VLLMClient.__dict__[name] for name in ("init_communicator", "update_named_params")}
        VLLMClient.init_communicator = init_communicator
        VLLMClient.update_named_params = update_named_params
        return self

    def uninstall(self) -> None:
        from trl.generation.vllm_client import VLLMClient

        for name, value in self._saved.items():
            setattr(VLLMClient, name, value)


class _CommunicatorStub:
    """Stands in for vLLM's NCCL trainer endpoint; `VLLMClient.close_communicator` only touches `.group`."""

    class _Group:
        store = None
        socket = None

    group = _Group()


# ----------------------------------------------------------------------------------------------------------------------
# Subprocesses
# ----------------------------------------------------------------------------------------------------------------------


def run_with_deadline(command: list[str], timeout: float, log_path: Path) -> tuple[int, str]:
    """Run `command` in its own process group with `TEST_ENV`; on timeout kill the whole group and return 124."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=apply_test_env(dict(os.environ)), cwd=str(REPO_ROOT), start_new_session=True)  # fmt: skip
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            rc = 124
    return rc, log_path.read_text(errors="replace")


def write_json(path: str | os.PathLike, data) -> None:
    Path(path).write_text(json.dumps(data, indent=1))


def python_bin(name: str) -> str:
    """A console script of this environment (torchrun, accelerate) next to the running interpreter."""
    return str(Path(sys.executable).with_name(name))
