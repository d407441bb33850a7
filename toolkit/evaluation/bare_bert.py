"""A saved BERT classifier loaded with torch, safetensors and tokenizers only, for ``tk predict``.

Importing transformers' BERT module takes longer than everything else in a one-text ``tk predict``: it
pulls in ``torch.distributed.tensor``, ``torch._dynamo``, sympy and scipy whatever the model (2.4 s of a
5.7 s prediction on this project's CPU, torch itself 2.3 s). For the models tk trains most, a run's
``model/`` is ``BertForSequenceClassification``: this module computes its forward pass with the same
weights and the same operations (modules named as transformers names them, so the fused bf16 CPU path
swaps the same layers), and tokenizes with the run's own ``tokenizer.json`` through ``tokenizers``, the
library transformers' fast tokenizers call. ``load_bare_bert`` answers None for anything it does not
reproduce exactly (another architecture, another attention or position scheme, a weight it does not
know), and tk then loads the run through transformers as before. Tests compare both on random models.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from toolkit.attention import bf16_attention

ARCHITECTURE = "BertForSequenceClassification"
# config.json keys that would take the forward pass away from the plain encoder this module computes, at the
# values it computes (transformers' defaults)
PLAIN_ENCODER = {"is_decoder": False, "add_cross_attention": False}


def load_bare_bert(model_dir: Path) -> tuple[Any, Any] | None:
    """(model, tokenizer) for the classifier saved in ``model_dir``, or None where this module does not
    compute it exactly as transformers would."""
    config = supported_config(model_dir)
    if config is None or not (model_dir / "tokenizer.json").is_file():
        return None
    tokenizer = BareTokenizer.from_folder(model_dir)
    if tokenizer is None:
        return None
    from safetensors.torch import load_file

    model = BareBertForSequenceClassification(config)
    try:
        weights = {legacy_name(name): value for name, value in load_file(model_dir / "model.safetensors").items()}
        weights.pop("bert.embeddings.position_ids", None)  # older transformers saved this fixed range
        if set(weights) != set(model.state_dict()):
            return None
        model.load_state_dict(weights)
    except Exception:  # weights that do not fit the config (a file swapped in, labels edited): transformers'
        return None  # loading then names the damage, as for any other model
    return model.eval(), tokenizer


def legacy_name(name: str) -> str:
    """A LayerNorm's weight and bias under their own names: early transformers 5 releases (5.2 among them)
    save them as the original BERT checkpoint's gamma and beta, and rename them so when loading."""
    if name.endswith("LayerNorm.gamma"):
        return name[:-len("gamma")] + "weight"
    if name.endswith("LayerNorm.beta"):
        return name[:-len("beta")] + "bias"
    return name


def supported_config(model_dir: Path) -> SimpleNamespace | None:
    path = model_dir / "config.json"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (values.get("model_type") != "bert" or values.get("architectures") != [ARCHITECTURE]
            or values.get("hidden_act") != "gelu" or values.get("position_embedding_type", "absolute") != "absolute"
            or any(values.get(key, value) != value for key, value in PLAIN_ENCODER.items())
            or not isinstance(values.get("id2label"), dict)):
        return None
    config = SimpleNamespace(**values)
    config.id2label = {int(i): name for i, name in values["id2label"].items()}
    config.num_labels = len(config.id2label)
    config.pad_token_id = values.get("pad_token_id", 0)
    config.layer_norm_eps = values.get("layer_norm_eps", 1e-12)
    config._attn_implementation = "sdpa"  # transformers' default for BERT
    return config


class BareTokenizer:
    """The calls tk makes of a transformers fast tokenizer, on the ``tokenizers.Tokenizer`` it wraps."""

    def __init__(self, backend: Any, truncation_side: str) -> None:
        self.backend, self.truncation_side = backend, truncation_side

    @classmethod
    def from_folder(cls, model_dir: Path) -> BareTokenizer | None:
        from tokenizers import Tokenizer

        settings_path = model_dir / "tokenizer_config.json"
        try:
            settings = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.is_file() else {}
            backend = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception:  # tokenizers raises its own kinds; the transformers path then reports the damage
            return None
        backend.no_padding()
        backend.no_truncation()
        return cls(backend, settings.get("truncation_side", "right"))

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __call__(self, texts: str | list[str], add_special_tokens: bool = True, truncation: bool = False,
                 max_length: int | None = None, verbose: bool = True) -> dict[str, list]:
        one = isinstance(texts, str)
        if truncation and max_length is not None:
            self.backend.enable_truncation(max_length, direction=self.truncation_side)
        try:
            encodings = self.backend.encode_batch([texts] if one else texts, add_special_tokens=add_special_tokens)
        finally:
            self.backend.no_truncation()
        ids = [encoding.ids for encoding in encodings]
        return {"input_ids": ids[0] if one else ids}


class BertEmbeddings(nn.Module):
    def __init__(self, config: SimpleNamespace) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, packing: Packing) -> torch.Tensor:
        """The real tokens' embeddings, packed (tokens x hidden)."""
        # token type 0 for every position, as transformers uses when given no token_type_ids
        embeddings = self.word_embeddings(packing.tokens(input_ids)) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(embeddings + self.position_embeddings(packing.positions))


class BertSelfAttention(nn.Module):
    def __init__(self, config: SimpleNamespace) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor, packing: Packing, mask: torch.Tensor) -> torch.Tensor:
        """``hidden``: packed tokens; ``mask``: which keys to attend to (bool, for SDPA), or an additive mask (for
        tk's bf16 attention). Attention reads the batch x heads x width x head-size grid, padding included."""
        query, key, value = (packing.grid(projection(hidden)).unflatten(-1, (self.heads, -1)).transpose(1, 2)
                             for projection in (self.query, self.key, self.value))
        if mask.dtype == torch.bool:
            output = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask).transpose(1, 2)
        else:
            output, _ = bf16_attention(self, query, key, value, mask)
        return packing.tokens(output.flatten(2))


class BertSelfOutput(nn.Module):
    """A projection back to the hidden size, then the residual sum and LayerNorm (attention's and the MLP's)."""

    def __init__(self, config: SimpleNamespace, inputs: int) -> None:
        super().__init__()
        self.dense = nn.Linear(inputs, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(hidden) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: SimpleNamespace) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config, config.hidden_size)

    def forward(self, hidden: torch.Tensor, packing: Packing, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden, packing, mask), hidden)


class BertIntermediate(nn.Module):
    def __init__(self, config: SimpleNamespace) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = nn.GELU()  # the name and kind fused_cpu_inference fuses into ``dense``

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden))


class BertLayer(nn.Module):
    def __init__(self, config: SimpleNamespace) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertSelfOutput(config, config.intermediate_size)

    def forward(self, hidden: torch.Tensor, packing: Packing, mask: torch.Tensor) -> torch.Tensor:
        attended = self.attention(hidden, packing, mask)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    def __init__(self, config: SimpleNamespace) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


class BertPooler(nn.Module):
    def __init__(self, config: SimpleNamespace) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor, packing: Packing) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[packing.first]))


class BertModel(nn.Module):
    def __init__(self, config: SimpleNamespace) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)


class BareBertForSequenceClassification(nn.Module):
    """transformers' ``BertForSequenceClassification`` at inference: the same weights under the same
    names, the same products, attention by SDPA (transformers' default) or tk's bf16 attention."""

    own_attention = True  # set_attn_implementation needs no entry in transformers' attention registry

    def __init__(self, config: SimpleNamespace) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def set_attn_implementation(self, name: str) -> None:
        self.config._attn_implementation = name

    def get_input_embeddings(self) -> nn.Embedding:
        return self.bert.embeddings.word_embeddings

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        packing = Packing(attention_mask)
        mask = attention_mask.bool()[:, None, None, :]  # batch x heads x queries x keys, broadcast
        if self.config._attn_implementation != "sdpa":  # tk's bf16 attention, as fused_cpu_inference sets it
            mask = torch.zeros(mask.shape, device=mask.device).masked_fill(~mask, torch.finfo(torch.float32).min)
        hidden = self.bert.embeddings(input_ids, packing)
        for layer in self.bert.encoder.layer:
            hidden = layer(hidden, packing, mask)
        return SimpleNamespace(logits=self.classifier(self.bert.pooler(hidden, packing)))


class Packing:
    """Where a batch's real tokens lie in its batch x width grid, so that every layer but attention reads them
    alone, packed (tokens x features).

    A batch of requests is padded to its longest text: 32 Sentiment140 tweets, 22 tokens on average, fill
    about half of a 32 x 45 grid, and the linear layers, which hold almost all of a short text's work, would
    compute the padding too. Each position's result is computed from its own token as before; attention sees
    the grid and the padding mask as before. A grid without padding is left as it is.

    The packed count is rounded up to a multiple of ``ROUND`` by repeating the last token (its copies compute
    the same values and land in the same place): a server's batches then come in a few dozen shapes, not one
    per token count, and its memory stays flat (oneDNN and the allocator keep something per shape).
    """

    ROUND = 64

    def __init__(self, attention_mask: torch.Tensor) -> None:
        self.batch, self.width = attention_mask.shape
        real = attention_mask.bool().flatten()
        self.padded = not bool(real.all())
        self.index = real.nonzero().squeeze(1) if self.padded else None  # each real token's place in the grid
        if self.padded and len(self.index) % self.ROUND:
            extra = self.ROUND - len(self.index) % self.ROUND
            self.index = torch.cat([self.index, self.index[-1:].expand(extra)])
        positions = torch.arange(self.width, device=attention_mask.device)
        self.positions = self.index % self.width if self.padded else positions.repeat(self.batch)
        lengths = attention_mask.sum(1)
        self.first = lengths.cumsum(0) - lengths  # each text's first token ([CLS]) among the packed tokens

    def tokens(self, grid: torch.Tensor) -> torch.Tensor:
        """batch x width (x features) -> tokens (x features)."""
        flat = grid.flatten(0, 1)
        return flat.index_select(0, self.index) if self.padded else flat

    def grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens x features -> batch x width x features, zeros at the padding."""
        if self.padded:
            tokens = tokens.new_zeros(self.batch * self.width, tokens.shape[-1]).index_copy_(0, self.index, tokens)
        return tokens.unflatten(0, (self.batch, self.width))
