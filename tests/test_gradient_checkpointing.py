"""With a frozen base and LoRA, gradients reach the adapter whether gradient checkpointing is on or off."""

from __future__ import annotations

import pytest
import torch

from ft.config import LoraSection
from ft.model import apply_lora


@pytest.mark.parametrize("checkpointing", [False, True])
def test_adapter_gets_gradients(tiny_model_dir, checkpointing):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model.config.use_cache = False
    model = apply_lora(model, LoraSection(r=4, alpha=8), checkpointing)
    model.train()
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (1, 16))

    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()

    lora_a = [p for n, p in model.named_parameters() if "lora_A" in n]
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_a and lora_b
    # lora_B starts at zero, so lora_A's gradient is zero on the first step by design; lora_B must get one.
    assert all(p.grad is not None for p in lora_a + lora_b)
    assert all(float(p.grad.abs().sum()) > 0 for p in lora_b)
    assert model.base_model.model.is_activation_checkpointing == checkpointing
