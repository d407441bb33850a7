"""tk predict's bare BERT: the same answers as transformers' model, without importing transformers."""

import json

import numpy as np
import pytest
import torch

from toolkit.data.tokens import encode_texts, encode_windows
from toolkit.evaluation import cpu_inference
from toolkit.evaluation.bare_bert import BareTokenizer, Packing, legacy_name, load_bare_bert
from toolkit.evaluation.inference import predict_probabilities

TEXTS = ["a good film", "bad", "the plot was awful and the ending boring " * 30, "Why? How... WHERE",
         "café naïve Ünïcödé 東京 🎬 émoji", "", "   spaces   around   ", "why how when where who " * 3]


@pytest.fixture(scope="module")
def saved_classifier(tmp_path_factory, tiny_model):
    """A tiny BERT classifier and its tokenizer as tk run saves them (save_pretrained), with 3 classes."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("saved-classifier")
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_model, num_labels=3, id2label={0: "neg", 1: "pos", 2: "why"}, label2id={"neg": 0, "pos": 1, "why": 2})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


def transformers_model(folder):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoModelForSequenceClassification.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("bf16", [False, True])
def test_bare_bert_answers_as_transformers_does(saved_classifier, bf16):
    if bf16 and not cpu_inference.onednn_linear_available():
        pytest.skip("this PyTorch build has no oneDNN linear kernel")
    model, tokenizer = transformers_model(saved_classifier)
    bare_model, bare_tokenizer = load_bare_bert(saved_classifier)
    assert bare_model.config.id2label == {0: "neg", 1: "pos", 2: "why"}
    encoded = encode_texts(tokenizer, TEXTS * 5, max_length=32)
    assert encode_texts(bare_tokenizer, TEXTS * 5, max_length=32) == encoded
    lengths = {len(row) for row in encoded["input_ids"]}
    assert len(lengths) > 3  # the batches are padded: the attention mask matters
    expected = predict_probabilities(model, encoded, batch_size=8, bf16=bf16)
    got = predict_probabilities(bare_model, encoded, batch_size=8, bf16=bf16)
    np.testing.assert_allclose(got, expected, atol=1e-5 if not bf16 else 1e-3)
    assert bare_model.config._attn_implementation == "sdpa"  # put back after the fused bf16 pass


def test_packing_keeps_the_real_tokens_and_puts_them_back_in_place():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    grid = torch.arange(12.0).reshape(3, 4, 1) + 1
    packing = Packing(mask)
    tokens = packing.tokens(grid)
    last = [12] * (Packing.ROUND - 8)  # the count rounded up with copies of the last token
    assert tokens.squeeze(1).tolist() == [1, 2, 3, 5, 9, 10, 11, 12, *last]
    assert packing.positions.tolist() == [0, 1, 2, 0, 0, 1, 2, 3, *[3] * len(last)]
    assert tokens[packing.first].squeeze(1).tolist() == [1, 5, 9]  # each text's [CLS]
    assert torch.equal(packing.grid(tokens), grid * mask[..., None])
    unpadded = Packing(torch.ones(2, 3, dtype=torch.long))
    assert not unpadded.padded and unpadded.first.tolist() == [0, 3]
    assert torch.equal(unpadded.grid(unpadded.tokens(grid[:2, :3])), grid[:2, :3])


def test_a_texts_answer_does_not_depend_on_the_batch_it_is_scored_in(saved_classifier):
    """Packed batches: a short text among long ones gets the answer it gets alone."""
    bare_model, bare_tokenizer = load_bare_bert(saved_classifier)
    encoded = encode_texts(bare_tokenizer, TEXTS, max_length=64)
    together = predict_probabilities(bare_model, encoded, batch_size=len(TEXTS))
    alone = predict_probabilities(bare_model, encoded, batch_size=1)
    np.testing.assert_allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize("truncation", ["head", "tail", "head+tail"])
def test_bare_tokenizer_gives_the_transformers_tokenizers_ids(truncation):
    """The real uncased vocabulary tk's MiniLM models use, saved as tk run saves it, on awkward texts."""
    from transformers import AutoTokenizer

    from plugins.models.minilm import bundled_model_dir

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir())
    bare = BareTokenizer.from_folder(bundled_model_dir())
    for max_length in (8, 64, 512):
        assert encode_texts(bare, TEXTS, max_length, truncation) == encode_texts(tokenizer, TEXTS, max_length,
                                                                                 truncation)
    assert encode_windows(bare, TEXTS, 16, 4) == encode_windows(tokenizer, TEXTS, 16, 4)
    assert len(bare) == len(tokenizer)


def test_a_model_the_bare_bert_does_not_compute_loads_through_transformers(saved_classifier, tmp_path):
    import shutil

    def variant(name, change):
        folder = tmp_path / name
        shutil.copytree(saved_classifier, folder)
        config = json.loads((folder / "config.json").read_text())
        change(config)
        (folder / "config.json").write_text(json.dumps(config))
        return folder

    assert load_bare_bert(variant("same", lambda config: None)) is not None
    assert load_bare_bert(variant("relative", lambda c: c.update(position_embedding_type="relative_key"))) is None
    assert load_bare_bert(variant("tanh-gelu", lambda c: c.update(hidden_act="gelu_new"))) is None
    assert load_bare_bert(variant("decoder", lambda c: c.update(is_decoder=True))) is None
    assert load_bare_bert(variant("masked-lm", lambda c: c.update(architectures=["BertForMaskedLM"]))) is None
    no_tokenizer_json = variant("vocab-only", lambda config: None)
    (no_tokenizer_json / "tokenizer.json").unlink()
    assert load_bare_bert(no_tokenizer_json) is None


def test_layer_norms_saved_as_gamma_and_beta_load_as_transformers_loads_them(saved_classifier, tmp_path):
    """Early transformers 5 releases save BERT's LayerNorm weights under the original checkpoint's names."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "gamma-beta"
    shutil.copytree(saved_classifier, folder)
    weights = {legacy_name(name): value for name, value in load_file(folder / "model.safetensors").items()}
    renamed = {name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): value
               for name, value in weights.items()}
    assert any(name.endswith("LayerNorm.gamma") for name in renamed)
    save_file(renamed, folder / "model.safetensors", metadata={"format": "pt"})
    model, _ = load_bare_bert(folder)
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name


def test_a_weight_the_bare_bert_does_not_know_sends_the_model_to_transformers(saved_classifier, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "extra-weight"
    shutil.copytree(saved_classifier, folder)
    weights = load_file(folder / "model.safetensors")
    weights["bert.encoder.layer.0.attention.self.distance_embedding.weight"] = torch.zeros(3, 32)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    assert load_bare_bert(folder) is None
