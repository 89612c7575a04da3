r"""Evaluation of a model on the paper's math benchmarks: avg@k and pass@k with math-verify.

For each benchmark problem the model samples `n >= k` completions; [`~trl_vcrl.rewards.accuracy_reward`] scores each
`1.0` or `0.0` against the gold answer. Per benchmark we report

- `avg@k`: the mean accuracy over all samples (an unbiased estimate of the single-sample accuracy, the paper's
  metric);
- `pass@k`: the probability that at least one of `k` samples is correct, with the unbiased estimator
  `1 - C(n - c, k) / C(n, k)` for `c` correct of `n` samples (Chen et al., 2021), averaged over problems;

and their unweighted mean over the benchmarks (how the paper averages its five benchmarks).

Generation goes through a `generate` function `(prompts, n) -> n completions per prompt`, one per backend
([`vllm_generate_fn`], [`transformers_generate_fn`]); anything with that signature can stand in for them.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from datasets import Dataset
from tqdm.auto import tqdm

from .data import EVAL_BENCHMARKS, load_benchmark
from .rewards import accuracy_reward

# (prompt texts, n) -> for each prompt, n sampled completions (text only, without the prompt).
GenerateFn = Callable[[list[str], int], list[list[str]]]

BACKENDS = ("auto", "vllm", "transformers")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from `c` correct among `n` samples: `1 - C(n - c, k) / C(n, k)`.

    Args:
        n (`int`):
            Number of samples drawn for the problem.
        c (`int`):
            Number of them that are correct, `0 <= c <= n`.
        k (`int`):
            Number of attempts allowed, `1 <= k <= n`.

    Returns:
        `float`: The probability that a random `k`-subset of the `n` samples holds at least one correct sample.
    """
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got k={k}, n={n}.")
    if not 0 <= c <= n:
        raise ValueError(f"The number of correct samples must lie in [0, n={n}], got c={c}.")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    # Product form of C(n-c, k) / C(n, k): exact for the sizes used here and free of huge binomials.
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def summarize(scores: Sequence[Sequence[float]], k: int) -> dict[str, float | int]:
    """avg@k and pass@k of one benchmark from the 0/1 scores of its samples.

    Args:
        scores (`Sequence[Sequence[float]]`):
            For each problem, the scores (`0.0` or `1.0`) of its `n` samples; `n` must be the same for all problems.
        k (`int`):
            The `k` of pass@k, `1 <= k <= n`.

    Returns:
        `dict`: `avg@{k}` (mean score over all samples), `pass@{k}` (mean unbiased pass@k over problems),
        `num_problems` and `num_samples` (`n`).
    """
    if not scores:
        raise ValueError("Cannot summarize a benchmark with no problems.")
    n = len(scores[0])
    if any(len(problem) != n for problem in scores):
        raise ValueError(f"Every problem needs the same number of samples, got {sorted({len(p) for p in scores})}.")
    correct = [round(sum(problem)) for problem in scores]
    return {
        f"avg@{k}": sum(correct) / (n * len(scores)),
        f"pass@{k}": sum(pass_at_k(n, c, k) for c in correct) / len(scores),
        "num_problems": len(scores),
        "num_samples": n,
    }


def average_over_benchmarks(results: dict[str, dict[str, float | int]], k: int) -> dict[str, float]:
    """Unweighted mean of `avg@{k}` and `pass@{k}` over benchmarks, as the paper averages its five benchmarks."""
    keys = (f"avg@{k}", f"pass@{k}")
    return {key: sum(result[key] for result in results.values()) / len(results) for key in keys}


def render_prompts(dataset: Dataset, tokenizer=None) -> list[str]:
    """Prompt texts of a benchmark: conversational prompts through `tokenizer`'s chat template, strings as they are.

    Args:
        dataset ([`~datasets.Dataset`]):
            A data set with a `prompt` column, as returned by the loaders of `trl_vcrl.data`.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`], *optional*):
            Needed for conversational prompts; the generation prompt of the assistant turn is appended, as TRL does in
            training.

    Returns:
        `list[str]`: One text per row.
    """
    texts = []
    for prompt in dataset["prompt"]:
        if isinstance(prompt, str):
            texts.append(prompt)
        elif tokenizer is None or tokenizer.chat_template is None:
            raise ValueError(
                "Conversational prompts need a tokenizer with a chat template; load the benchmark with "
                "conversational=False for a model without one."
            )
        else:
            texts.append(tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True))
    return texts


def score_benchmark(
    prompts: list[str],
    answers: list[str],
    generate: GenerateFn,
    num_samples: int,
    batch_size: int,
    description: str | None = None,
) -> list[list[float]]:
    """For each prompt, the [`~trl_vcrl.rewards.accuracy_reward`] of the `num_samples` completions `generate` draws
    for it against its gold answer in `answers`; `batch_size` prompts per `generate` call, with a progress bar labelled
    `description`."""
    scores = []
    with tqdm(total=len(prompts), desc=description, unit="prompt") as progress:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            completions = generate(batch, num_samples)
            if len(completions) != len(batch) or any(len(group) != num_samples for group in completions):
                raise ValueError(
                    f"generate returned {[len(group) for group in completions]} completions for {len(batch)} prompts; "
                    f"expected {num_samples} per prompt."
                )
            for group, gold in zip(completions, answers[start : start + batch_size], strict=True):
                scores.append(accuracy_reward(group, answer=[gold] * len(group)))
            progress.update(len(batch))
    return scores


def resolve_backend(backend: str) -> str:
    """`"auto"` becomes `"vllm"` when vLLM is importable and a CUDA device is visible, else `"transformers"`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {list(BACKENDS)}.")
    if backend != "auto":
        return backend
    import torch

    return "vllm" if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available() else "transformers"


@dataclass(frozen=True)
class SamplingSettings:
    """How a `generate` function samples, whatever its backend.

    Args:
        max_new_tokens (`int`):
            Longest completion, in tokens.
        temperature (`float`):
            Sampling temperature, `> 0` so that the samples of a problem differ.
        top_p (`float`):
            Nucleus sampling mass.
        seed (`int`):
            Seed of the sampler, set once so that a run is reproducible.
    """

    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 to draw several samples per problem, got {self.temperature}.")


def transformers_generate_fn(model, tokenizer, sampling: SamplingSettings) -> GenerateFn:
    """A `generate` function sampling with [`~transformers.GenerationMixin.generate`].

    Args:
        model ([`~transformers.PreTrainedModel`]):
            The causal language model, on the device to generate on.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            Its tokenizer; prompts are left-padded.
        sampling ([`SamplingSettings`]):
            How to sample.
    """
    import torch

    torch.manual_seed(sampling.seed)
    tokenizer.padding_side = "left"
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def generate(prompts: list[str], n: int) -> list[list[str]]:
        # Chat templates already hold the special tokens a model expects; adding BOS again would change the prompt.
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.no_grad():
            output = model.generate(
                **inputs,
                do_sample=True,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_new_tokens=sampling.max_new_tokens,
                num_return_sequences=n,
                pad_token_id=pad_token_id,
            )
        texts = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]

    return generate


def vllm_generate_fn(
    model_path: str,
    sampling: SamplingSettings,
    dtype: str = "auto",
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
) -> GenerateFn:
    """A `generate` function sampling with a [vLLM](https://github.com/vllm-project/vllm) engine.

    Args:
        model_path (`str`):
            Hub id or local directory of the model.
        sampling ([`SamplingSettings`]):
            How to sample; `seed` seeds the engine.
        dtype (`str`, *optional*, defaults to `"auto"`):
            Weight dtype of the engine.
        tensor_parallel_size (`int`, *optional*, defaults to `1`):
            GPUs the model is sharded over.
        gpu_memory_utilization (`float`, *optional*, defaults to `0.9`):
            Share of GPU memory vLLM may take.
        max_model_len (`int`, *optional*):
            Context length of the engine; `None` takes the model's.
    """
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=model_path,
        dtype=dtype,
        seed=sampling.seed,
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
    )
    tokenizer = llm.get_tokenizer()

    def generate(prompts: list[str], n: int) -> list[list[str]]:
        params = SamplingParams(
            n=n, temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_new_tokens
        )
        # Token ids, as in the transformers backend: vLLM would otherwise add special tokens to rendered chat prompts.
        token_prompts = [
            {"prompt_token_ids": tokenizer(text, add_special_tokens=False)["input_ids"]} for text in prompts
        ]
        outputs = llm.generate(token_prompts, params, use_tqdm=False)
        return [[sample.text for sample in output.outputs] for output in outputs]

    return generate


def check_settings(benchmarks: Sequence[str], k: int, num_samples: int, data_files: dict[str, str]) -> None:
    """Raise a `ValueError` for unknown benchmarks, data files of unselected ones, or `k` outside `[1, num_samples]`.

    Cheap, so callers can run it before loading a model.
    """
    if not 1 <= k <= num_samples:
        raise ValueError(f"Need 1 <= k <= num_samples, got k={k}, num_samples={num_samples}.")
    unknown = sorted(set(benchmarks) - set(EVAL_BENCHMARKS)) + sorted(set(data_files) - set(benchmarks))
    if unknown or not benchmarks:
        raise ValueError(
            f"Unknown or unselected benchmark(s) {unknown}: benchmarks must be a non-empty selection of "
            f"{sorted(EVAL_BENCHMARKS)}, and data_files may only name selected benchmarks {list(benchmarks)}."
        )


def evaluate(
    generate: GenerateFn,
    tokenizer,
    benchmarks: Sequence[str],
    k: int,
    num_samples: int | None = None,
    data_files: dict[str, str] | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    conversational: bool = True,
) -> dict:
    """avg@k and pass@k on each benchmark and their mean over benchmarks.

    Args:
        generate (`GenerateFn`):
            `(prompts, n) -> n completions per prompt`, e.g. from [`transformers_generate_fn`] or
            [`vllm_generate_fn`].
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            Tokenizer whose chat template renders the conversational prompts.
        benchmarks (`Sequence[str]`):
            Keys of `trl_vcrl.data.EVAL_BENCHMARKS`.
        k (`int`):
            The `k` of avg@k and pass@k.
        num_samples (`int`, *optional*):
            Samples per problem `n >= k`; `None` uses `k`. A larger `n` lowers the variance of both estimates.
        data_files (`dict[str, str]`, *optional*):
            Local file per benchmark name, in that benchmark's Hub schema; benchmarks not listed are downloaded.
        limit (`int`, *optional*):
            Keep only the first `limit` problems of each benchmark.
        batch_size (`int`, *optional*, defaults to `8`):
            Prompts per `generate` call.
        conversational (`bool`, *optional*, defaults to `True`):
            Prompts through the chat template; `False` gives plain-text prompts, as the recipes train base models.

    Returns:
        `dict`: `{"benchmarks": {name: summary}, "average": {f"avg@{k}": ..., f"pass@{k}": ...}}`, each summary as
        returned by [`summarize`] plus the per-problem number of correct samples under `"correct_per_problem"`.
    """
    num_samples = k if num_samples is None else num_samples
    data_files = data_files or {}
    check_settings(benchmarks, k, num_samples, data_files)
    results = {}
    for name in benchmarks:
        dataset = load_benchmark(name, data_files.get(name), conversational=conversational)
        if limit is not None:
            dataset = dataset.select(range(min(limit, len(dataset))))
        scores = score_benchmark(
            render_prompts(dataset, tokenizer), dataset["answer"], generate, num_samples, batch_size, name
        )
        results[name] = summarize(scores, k) | {"correct_per_problem": [round(sum(s)) for s in scores]}
    return {"benchmarks": results, "average": average_over_benchmarks(results, k)}


def format_table(results: dict, k: int) -> str:
    """A plain-text table of [`evaluate`]'s results, in percent as in the paper."""
    header = f"{'benchmark':<16}{'problems':>10}{f'avg@{k} (%)':>14}{f'pass@{k} (%)':>14}"
    lines = [header, "-" * len(header)]
    for name, result in results["benchmarks"].items():
        lines.append(
            f"{name:<16}{result['num_problems']:>10}{100 * result[f'avg@{k}']:>14.2f}{100 * result[f'pass@{k}']:>14.2f}"
        )
    average = results["average"]
    lines.append("-" * len(header))
    lines.append(f"{'average':<16}{'':>10}{100 * average[f'avg@{k}']:>14.2f}{100 * average[f'pass@{k}']:>14.2f}")
    return "\n".join(lines)
