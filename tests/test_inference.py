"""Batched prediction: padding from token lists or from Arrow."""

import numpy as np
import pyarrow as pa
import pytest

from toolkit.evaluation.inference import TokenRows, predict_probabilities, rows_per_batch

ROWS = [[2, 7, 8, 3], [2, 3], [2, 5, 6, 7, 8, 9, 3]]  # ids inside the tiny test vocabulary


def test_token_rows_pad_the_same_from_lists_and_from_arrow():
    chunked = pa.chunked_array([pa.array(ROWS[:1]), pa.array(ROWS[1:])])
    for tokens in (TokenRows(ROWS), TokenRows(chunked)):
        ids, mask = tokens.batch(np.array([2, 0]), pad=0)
        assert ids.tolist() == [ROWS[2], ROWS[0] + [0, 0, 0]]
        assert mask.tolist() == [[1] * 7, [1] * 4 + [0] * 3]
        assert tokens.lengths.tolist() == [4, 2, 7]
        ids, mask = tokens.batch(np.array([1, 0]), pad=0, multiple=8)
        assert ids.tolist() == [ROWS[1] + [0] * 6, ROWS[0] + [0] * 4] and mask.sum(axis=1).tolist() == [2, 4]



def test_auto_batches_hold_64_rows_on_the_cpu_and_a_token_budget_on_a_gpu():
    assert rows_per_batch(32, "cuda", 128) == 32  # a number is kept as set
    assert rows_per_batch("auto", "cpu", 40) == 64
    assert [rows_per_batch("auto", "cuda", longest) for longest in (70, 128, 512, 4096)] == [468, 256, 64, 64]


def test_fused_cpu_inference_answers_as_float32_does_and_puts_the_model_back(tiny_model):
    import torch
    from transformers import AutoModelForSequenceClassification

    from toolkit.evaluation import cpu_inference

    if not cpu_inference.onednn_linear_available():
        pytest.skip("this PyTorch build has no oneDNN linear kernel")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=3).eval()
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    modules = [type(module) for module in model.modules()]
    with cpu_inference.fused_cpu_inference(model):
        fused = [module for module in model.modules() if isinstance(module, cpu_inference.OneDnnLinear)]
        parts = [module for module in model.modules() if isinstance(module, cpu_inference.ProjectionPart)]
        assert len(parts) == 2 * 3 and len({id(part.shared) for part in parts}) == 2  # query, key, value per layer
        assert len(fused) + len(parts) == modules.count(torch.nn.Linear) and not any(
            type(module) is torch.nn.Linear for module in model.modules())
        assert [module.activation for module in fused].count("gelu") == 2  # each layer's intermediate dense
        assert model.config._attn_implementation == cpu_inference.ATTENTION
    assert [type(module) for module in model.modules()] == modules
    assert model.config._attn_implementation == "sdpa"
    assert all(torch.equal(value, weights[name]) for name, value in model.state_dict().items())

    encoded = {"input_ids": [ROWS[2], ROWS[0], ROWS[1]] * 20}  # padded batches: the attention mask is used
    float32 = predict_probabilities(model, encoded, batch_size=8, bf16=False)
    calls = []
    real = cpu_inference.OneDnnLinear.forward
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cpu_inference.OneDnnLinear, "forward", lambda self, x: calls.append(1) or real(self, x))
        bf16 = predict_probabilities(model, encoded, batch_size=8, bf16=True)
    assert calls  # the fused layers answered
    np.testing.assert_allclose(bf16, float32, atol=0.02)
    assert (bf16.argmax(axis=1) == float32.argmax(axis=1)).mean() > 0.9


def test_only_the_exact_gelu_is_fused():
    import torch
    from transformers.activations import ACT2FN

    from toolkit.evaluation.cpu_inference import exact_gelu

    assert exact_gelu(ACT2FN["gelu"]) and exact_gelu(torch.nn.GELU())
    assert not exact_gelu(ACT2FN["gelu_new"]) and not exact_gelu(torch.nn.GELU(approximate="tanh"))
    assert not exact_gelu(ACT2FN["relu"]) and not exact_gelu(None)


FAMILY = {  # tiny random configs of BERT-family models tk users fine-tune
    "distilbert": {"dim": 32, "hidden_dim": 64, "n_layers": 2, "n_heads": 2},
    "roberta": {}, "electra": {"embedding_size": 16}, "deberta-v2": {}, "albert": {"embedding_size": 16}, "mpnet": {},
    # local (sliding-window) attention layers: a padding position can see no key at all
    "modernbert": {"global_attn_every_n_layers": 2, "num_hidden_layers": 4, "local_attention": 8, "pad_token_id": 0,
                   "bos_token_id": 1, "eos_token_id": 2, "cls_token_id": 1, "sep_token_id": 2},
}


@pytest.mark.parametrize("kind", sorted(FAMILY))
def test_bf16_prediction_of_bert_family_models_is_close_to_float32(kind):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.for_model(kind, **{"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
                                           "num_attention_heads": 2, "intermediate_size": 64, "num_labels": 3,
                                           "max_position_embeddings": 64, **FAMILY[kind]})
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    rows = np.random.default_rng(0).integers(5, 90, size=(20, 30))
    encoded = {"input_ids": [list(row[:length]) for row, length in zip(rows, [30, 12, 7, 22] * 5)]}  # padded
    float32 = predict_probabilities(model, encoded, batch_size=8, bf16=False)
    bf16 = predict_probabilities(model, encoded, batch_size=8, bf16=True)
    assert np.isfinite(bf16).all()
    from toolkit.evaluation.cpu_inference import ProjectionPart, fused_cpu_inference, onednn_linear_available

    with fused_cpu_inference(model):  # each layer's query, key and value made by one product (ModernBERT: already)
        parts = sum(isinstance(module, ProjectionPart) for module in model.modules())
    layers = 1 if kind == "albert" else config.num_hidden_layers  # ALBERT's layers share one set of weights
    assert parts == (0 if kind == "modernbert" or not onednn_linear_available() else 3 * layers)
    np.testing.assert_allclose(bf16, float32, atol=0.02)


def test_a_shared_query_key_value_product_answers_each_projection_in_any_order():
    import torch

    from toolkit.evaluation import cpu_inference

    if not cpu_inference.onednn_linear_available():
        pytest.skip("this PyTorch build has no oneDNN linear kernel")
    torch.manual_seed(0)
    linears = [torch.nn.Linear(16, size) for size in (8, 8, 4)]
    shared = cpu_inference.SharedProduct(linears)
    x, other = torch.randn(5, 16), torch.randn(5, 16)

    def expected(index, tensor):
        return linears[index](tensor.bfloat16().float()).detach()

    with torch.inference_mode():  # value first, then a query of another tensor (cross-attention), then the rest
        answers = [(2, x, shared.part(2, x)), (0, other, shared.part(0, other)), (0, x, shared.part(0, x)),
                   (1, x, shared.part(1, x)), (1, other, shared.part(1, other)), (2, other, shared.part(2, other))]
    for index, tensor, got in answers:  # each against its own linear layer
        assert got.shape == (5, linears[index].out_features)
        torch.testing.assert_close(got.float(), expected(index, tensor), atol=0.05, rtol=0.02)
    with torch.inference_mode():
        in_order = [shared.part(index, x) for index in range(3)]
    assert all(torch.equal(got, answers[i][2]) for got, i in zip(in_order, (2, 3, 0)))
    assert shared.input is None and shared.parts == ()  # a layer's three taken: nothing held until its next call
