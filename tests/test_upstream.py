"""trl_vcrl.upstream: a TRL that breaks an assumption of VCRL's curriculum fails when the trainer is built."""

import pytest
import trl
from conftest import coin_reward, toy_dataset
from trl import GRPOTrainer

from trl_vcrl import VCRLConfig, VCRLTrainer
from trl_vcrl.upstream import check_batch_keys


def build(model, tokenizer, base_args, **settings):
    args = VCRLConfig(**base_args, **settings)
    return VCRLTrainer(model, coin_reward, args=args, train_dataset=toy_dataset(), processing_class=tokenizer)


def test_changed_hook_signature_fails_at_construction(model, tokenizer, base_args, monkeypatch):
    monkeypatch.setattr(GRPOTrainer, "_calculate_rewards", lambda self, inputs, prompts, completions: None)
    with pytest.raises(RuntimeError, match=r"GRPOTrainer._calculate_rewards takes \['self', 'inputs', 'prompts', "
                                           r"'completions'\].*Install trl>=1.16.0,<1.17.0"):  # fmt: skip
        build(model, tokenizer, base_args)
    build(model, tokenizer, base_args, dynamic_sampling=False, replay=False)  # GRPO needs none of it


def test_unsupported_trl_version_fails_at_construction(model, tokenizer, base_args, monkeypatch):
    monkeypatch.setattr(trl, "__version__", "1.17.0")
    with pytest.raises(RuntimeError, match=r"trl 1.17.0 is outside the supported range >=1.16.0,<1.17.0"):
        build(model, tokenizer, base_args)


def test_unknown_advantage_setting_fails_at_construction(model, tokenizer, base_args, monkeypatch):
    real_init = GRPOTrainer.__init__

    def init_with_new_mode(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.scale_rewards = "quantile"

    monkeypatch.setattr(GRPOTrainer, "__init__", init_with_new_mode)
    with pytest.raises(RuntimeError, match=r"scale_rewards='quantile' has no advantage formula in VCRL"):
        build(model, tokenizer, base_args)


def test_unknown_batch_key_names_it_and_the_trl_version():
    check_batch_keys({"prompt_ids": None, "completion_mask": None, "advantages": None})
    with pytest.raises(RuntimeError, match=rf"batch holds \['pixel_values'\].*trl {trl.__version__}"):
        check_batch_keys({"prompt_ids": None, "pixel_values": None})
