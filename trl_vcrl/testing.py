"""Helpers for fast offline runs: a tiny chat model and tokenizer built locally, and the settings of a CPU run.

The test suite uses them, and so do the benchmarks and the analysis notebook, outside the test suite: that is why they
ship in the package (as `trl.testing`-style helpers) rather than in `tests/`. The model is a randomly initialised
`Qwen2ForCausalLM` with a byte-level BPE tokenizer and a ChatML template; head size 32 keeps it usable by vLLM's CPU
attention backend.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

# `GRPOConfig` fields of a fast offline run on CPU: no accelerator or bf16, no tracker, no checkpoints, no reference
# model (beta=0), a log entry every step. Callers add the run's own fields.
CPU_RUN_SETTINGS = dict(use_cpu=True, bf16=False, report_to="none", save_strategy="no", beta=0.0, logging_steps=1)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _training_corpus() -> list[str]:
    lines = []
    for a in range(30):
        for b in range(10):
            lines.append(f"What is {a} + {b}? The answer is \\boxed{{{a + b}}}.")
    lines += ["user", "assistant", "system", "Solve the problem step by step.", "0123456789 +-*/=()"]
    return lines


def build_tiny_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """Byte-level BPE tokenizer trained on a few hundred arithmetic lines, with a ChatML chat template."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_training_corpus(), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        padding_side="left",
        additional_special_tokens=["<|im_start|>"],
    )
    wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> Qwen2ForCausalLM:
    """A 2-layer random Qwen2 (hidden 64, two heads of size 32) matching `tokenizer`."""
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def build_tiny_model_and_tokenizer(seed: int = 0) -> tuple[Qwen2ForCausalLM, PreTrainedTokenizerFast]:
    """`build_tiny_tokenizer()` and a `build_tiny_model` on it."""
    tokenizer = build_tiny_tokenizer()
    return build_tiny_model(tokenizer, seed=seed), tokenizer
