"""PCG64 dropout masks on the CPU: the same Bernoulli masks, reproducible, and the model given back as it was."""

import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification

from plugins.engines.trainer.fast_dropout import ATTENTION, FastDropout, fast_dropout, keep_mask


def test_masks_keep_the_right_share_and_follow_torch_seed():
    torch.manual_seed(3)
    first = keep_mask(torch.Size([1000, 1000]), 0.1)
    assert first.dtype == torch.bool and first.shape == (1000, 1000)
    assert first.float().mean().item() == pytest.approx(0.9, abs=0.002)
    torch.manual_seed(3)
    assert torch.equal(first, keep_mask(torch.Size([1000, 1000]), 0.1))
    assert not torch.equal(first, keep_mask(torch.Size([1000, 1000]), 0.1))
    assert keep_mask(torch.Size([7, 3]), 0.5).shape == (7, 3)  # sizes not a multiple of 4


def test_dropout_scales_kept_entries_and_passes_gradients_through_them():
    layer = FastDropout(0.25)
    x = torch.ones(64, 64, requires_grad=True)
    y = layer(x)
    kept = y != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.75))
    assert 0.6 < kept.float().mean().item() < 0.9
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)
    assert torch.equal(layer.eval()(x), x)


def test_model_trains_with_fast_dropout_and_comes_back_unchanged(tiny_model):
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_model, num_labels=2, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    model.set_attn_implementation("eager")
    ids = torch.randint(5, 30, (4, 12))
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0  # padding: the attention copy must mask it as transformers' eager attention does
    expected = model.eval()(input_ids=ids, attention_mask=mask).logits
    with fast_dropout(model):
        assert model.config._attn_implementation == ATTENTION
        assert not any(type(m) is nn.Dropout for m in model.modules())
        torch.testing.assert_close(model.eval()(input_ids=ids, attention_mask=mask).logits, expected)
        model.train()
        assert not torch.equal(model(input_ids=ids, attention_mask=mask).logits,
                               model(input_ids=ids, attention_mask=mask).logits)
    assert model.config._attn_implementation == "eager"
    assert not any(isinstance(m, FastDropout) for m in model.modules())
    torch.testing.assert_close(model.eval()(input_ids=ids, attention_mask=mask).logits, expected)
