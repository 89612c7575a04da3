"""Shared fixtures: a tiny local model and tokenizer, a toy dataset whose prompts have known reward variance."""

import os
import zlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

torch.set_num_threads(1)

from datasets import Dataset  # noqa: E402

from trl_vcrl.testing import CPU_RUN_SETTINGS, build_tiny_model, build_tiny_tokenizer  # noqa: E402


def coin_reward(completions, kind, **kwargs):
    """Toy verifier with known difficulty: "easy" prompts always score 1, "hard" 0 (p = 0), "coin" prompts score a
    hash bit of the sampled completion, so their groups usually have high variance."""
    rewards = []
    for completion, k in zip(completions, kind):
        if k == "easy":
            rewards.append(1.0)
        elif k == "hard":
            rewards.append(0.0)
        else:
            rewards.append(float(zlib.crc32(completion.encode()) % 2))
    return rewards


def toy_dataset(kinds=("coin", "easy", "hard"), size=48, conversational=False) -> Dataset:
    rows = []
    for i in range(size):
        kind = kinds[i % len(kinds)]
        text = f"Question {i} ({kind}): what is {i} + {i % 7}?"
        rows.append({"prompt": [{"role": "user", "content": text}] if conversational else text, "kind": kind})
    return Dataset.from_list(rows)


@pytest.fixture(scope="session")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture
def model(tokenizer):
    return build_tiny_model(tokenizer, seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny random Qwen2 and its tokenizer, saved like a Hub checkpoint so the CLI and the demo load them by path."""
    path = tmp_path_factory.mktemp("tiny-model")
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def base_args(tmp_path):
    """Settings for a fast CPU run; tests override what they exercise."""
    return dict(
        **CPU_RUN_SETTINGS,
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=8,
        max_steps=3,
        learning_rate=1e-3,
        seed=0,
        disable_tqdm=True,
    )
