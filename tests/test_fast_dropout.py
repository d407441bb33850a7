"""The CPU training step's levers (PCG64 dropout, bf16 attention, one embedding-gradient buffer), undone after."""

import contextlib

import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification

from plugins.engines.eager.fast_dropout import ATTENTION, FastDropout, fast_dropout, keep_mask


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


def test_attention_drops_probabilities_like_eager_attention_and_stays_in_bf16():
    from plugins.engines.eager.fast_dropout import eager_attention

    module = nn.Module().train()
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    padding = torch.zeros(2, 1, 5, 5)
    padding[1, :, :, 3:] = torch.finfo(torch.float32).min
    torch.manual_seed(7)
    output, _ = eager_attention(module, q, k, v, padding, dropout=0.2)
    torch.manual_seed(7)
    keep = keep_mask(torch.Size([2, 3, 5, 5]), 0.2)
    probabilities = torch.softmax(q @ k.transpose(2, 3) * 8**-0.5 + padding, dim=-1)
    expected = (probabilities * keep / 0.8) @ v
    torch.testing.assert_close(output, expected.transpose(1, 2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(7)
        output, weights = eager_attention(module, q, k, v, padding, dropout=0.2)
    # the float32 padding mask must not promote the batch x heads x length x length tensors to float32
    assert weights.dtype == torch.bfloat16
    torch.testing.assert_close(output.float(), expected.transpose(1, 2), atol=0.05, rtol=0.05)


@pytest.mark.parametrize("micro_batches", [1, 2])
def test_reused_embedding_gradient_trains_to_the_same_weights(tiny_model, micro_batches):
    """Each step's batches use other rows: rows written in an earlier step must be zeroed, and a second
    micro-batch's rows (added into the buffer by autograd, past the hook) too. With one micro-batch the
    weights are the same bit for bit; with two, sparse rows add into a dense gradient in another order than
    dense ones (AdamW carries that to 3e-5 after 4 steps), where a stale row would be off by about the
    learning rate (1e-2)."""
    from plugins.engines.eager.embedding_gradient import reused_embedding_gradient

    def train(reuse: bool) -> dict:
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        embedding = model.get_input_embeddings()
        with reused_embedding_gradient(model) if reuse else contextlib.nullcontext():
            for step in range(4):
                for micro_batch in range(micro_batches):
                    ids = torch.randint(1, 30, (4, 9))
                    ids[0, 6:] = 0  # padding rows of the vocabulary get no gradient
                    labels = torch.tensor([0, 1, 1, 0])
                    model(input_ids=ids, attention_mask=(ids != 0).long(), labels=labels).loss.backward()
                    assert not embedding.weight.grad.is_sparse
                optimizer.step()
                model.zero_grad()
            assert embedding.sparse == reuse
        assert not embedding.sparse  # given back as it was
        return model.state_dict()

    reused, dense = train(True), train(False)
    for name, weight in dense.items():
        if micro_batches == 1:
            assert torch.equal(reused[name], weight), name
        else:
            torch.testing.assert_close(reused[name], weight, rtol=0, atol=1e-4)


@pytest.mark.parametrize("scale", [1.0, 1e4])  # gradients within the limit, and far above it
def test_clipping_the_reused_embedding_gradient_by_its_rows_gives_clip_grad_norm_numbers(tiny_model, scale):
    from plugins.engines.eager.embedding_gradient import reused_embedding_gradient
    from toolkit.training import policy

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    ids = torch.randint(1, 30, (4, 9))
    with reused_embedding_gradient(model) as gradient:
        for _ in range(2):  # the second step's buffer holds zeroed rows of the first
            model.zero_grad()
            (model(input_ids=ids, labels=torch.tensor([0, 1, 1, 0])).loss * scale).backward()
            ids = torch.randint(1, 30, (4, 9))
        rows_of = gradient.rows_of()
        assert list(rows_of) == [id(model.get_input_embeddings().weight)]
        expected = [p.grad.clone() for p in model.parameters()]
        expected_norm = torch.nn.utils.clip_grad_norm_(expected_parameters(model, expected), policy.MAX_GRAD_NORM)
        norm = policy.clip_gradients_if_needed(model.parameters(), rows_of)
    torch.testing.assert_close(norm, expected_norm)
    for parameter, grad in zip(model.parameters(), expected):
        torch.testing.assert_close(parameter.grad, grad)


def expected_parameters(model, grads):
    """Stand-ins holding copies of ``model``'s gradients, for clip_grad_norm_ to clip the whole way."""
    stand_ins = [torch.nn.Parameter(torch.zeros_like(p)) for p in model.parameters()]
    for stand_in, grad in zip(stand_ins, grads):
        stand_in.grad = grad
    return stand_ins
