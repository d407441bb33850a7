"""Batched prediction: padding from token lists or Arrow, and the bf16 copy a CPU predicts with."""

import numpy as np
import pyarrow as pa
import torch

from toolkit.evaluation.inference import TokenRows, cpu_inference_model, predict_probabilities

ROWS = [[2, 7, 8, 3], [2, 3], [2, 5, 6, 7, 8, 9, 3]]  # ids inside the tiny test vocabulary


def test_token_rows_pad_the_same_from_lists_and_from_arrow():
    chunked = pa.chunked_array([pa.array(ROWS[:1]), pa.array(ROWS[1:])])
    for tokens in (TokenRows(ROWS), TokenRows(chunked)):
        ids, mask = tokens.batch(np.array([2, 0]), pad=0)
        assert ids.tolist() == [ROWS[2], ROWS[0] + [0, 0, 0]]
        assert mask.tolist() == [[1] * 7, [1] * 4 + [0] * 3]
        assert tokens.lengths.tolist() == [4, 2, 7]


def test_cpu_bf16_prediction_uses_a_bf16_sdpa_copy_and_leaves_the_model_alone(tiny_model):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=3, attn_implementation="eager")
    before = {name: value.clone() for name, value in model.state_dict().items()}
    copy = cpu_inference_model(model, bf16=True)
    assert copy is not model and next(copy.parameters()).dtype == torch.bfloat16
    assert copy.config._attn_implementation == "sdpa"
    assert next(model.parameters()).dtype == torch.float32 and model.config._attn_implementation == "eager"
    assert cpu_inference_model(model, bf16=False) is model
    assert cpu_inference_model(copy, bf16=True) is copy  # already bf16 (a saved run loaded for prediction)

    encoded = {"input_ids": ROWS}
    exact = predict_probabilities(model, encoded, batch_size=2)
    rounded = predict_probabilities(model, encoded, batch_size=2, bf16=True)
    assert np.allclose(rounded, exact, atol=2e-2) and np.allclose(rounded.sum(axis=1), 1, atol=1e-5)
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())
