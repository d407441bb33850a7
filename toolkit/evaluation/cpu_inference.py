"""Prediction on the CPU in bf16 at the speed of its matrix units (``predict_probabilities`` uses it).

For the length of a prediction the model's ``nn.Linear`` layers run as single oneDNN calls on bf16
copies of their weights, with the exact (erf) GELU after a BERT intermediate layer fused into its
product, and the attention stays in bf16. Under autocast each linear layer casts its weight on every
call and ``addmm`` first copies the bias into the output: a 8192 x 384 -> 1536 layer took 31.8 ms,
45.8 ms with its GELU, against 28.4 ms and 30.1 ms as one fused call (this 2-core AMD EPYC, bf16).
The oneDNN call is the one PyTorch's own compiler emits for frozen CPU models
(``torch.ops.mkldnn._linear_pointwise``); where this PyTorch build lacks it, nothing changes.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch
from torch import nn

from toolkit.attention import bf16_attention, register_attention

ATTENTION = "tk_bf16_eager"


class OneDnnLinear(nn.Module):
    """A frozen linear layer (and the GELU after it, where ``activation`` is "gelu") as one oneDNN call."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, activation: str = "none",
                 float_output: bool = False) -> None:
        super().__init__()
        self.weight = weight.detach().to(torch.bfloat16)
        self.bias = None if bias is None else bias.detach().to(torch.bfloat16)
        self.activation, self.float_output = activation, float_output

    @classmethod
    def of(cls, linear: nn.Linear, activation: str = "none", float_output: bool = False) -> OneDnnLinear:
        return cls(linear.weight, linear.bias, activation, float_output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.to(torch.bfloat16).reshape(-1, x.shape[-1])
        algorithm = "none" if self.activation == "gelu" else ""  # "none": the exact GELU, not tanh's
        out = torch.ops.mkldnn._linear_pointwise(rows, self.weight, self.bias, self.activation, [], algorithm)
        out = out.view(*x.shape[:-1], out.shape[-1])
        return out.float() if self.float_output else out


# the query, key and value projections of one attention layer, as the model families name them
PROJECTIONS = (("query", "key", "value"), ("q_lin", "k_lin", "v_lin"), ("query_proj", "key_proj", "value_proj"),
               ("q", "k", "v"))


class SharedProduct:
    """A layer's query, key and value projections as one product: they read the same input, and one
    8192 x 384 -> 1152 product (input cast once) took 19.9 ms against 23.5 ms for three -> 384.

    The first projection called with a tensor computes all three; the others, called with that same
    tensor object, take their part. Called with any other tensor (cross-attention, DeBERTa's relative
    positions), the product is made again for it: the answer never depends on the order of the calls.
    """

    def __init__(self, linears: list[nn.Linear]) -> None:
        biases = [linear.bias for linear in linears]
        self.linear = OneDnnLinear(torch.cat([linear.weight for linear in linears]),
                                   None if biases[0] is None else torch.cat(biases))
        self.sizes = [linear.out_features for linear in linears]
        self.input, self.parts, self.taken = None, (), 0

    def part(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if x is not self.input:  # a reference is held, so no other tensor can be this object
            self.input, self.parts, self.taken = x, self.linear(x).split(self.sizes, dim=-1), 0
        part, self.taken = self.parts[index], self.taken + 1
        if self.taken == len(self.parts):  # all taken: hold no memory until the layer's next call
            self.input, self.parts = None, ()
        return part


class ProjectionPart(nn.Module):
    """One projection's part of a ``SharedProduct``, in the projection's place."""

    def __init__(self, shared: SharedProduct, index: int) -> None:
        super().__init__()
        self.shared, self.index = shared, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared.part(self.index, x)


def shared_projections(parent: nn.Module) -> tuple[str, ...]:
    """The names of ``parent``'s query, key and value projections where one product can make all three:
    plain linear layers of the same input size, all with a bias or none."""
    for names in PROJECTIONS:
        linears = [getattr(parent, name, None) for name in names]
        if (all(type(linear) is nn.Linear for linear in linears)
                and len({(linear.in_features, linear.bias is None) for linear in linears}) == 1):
            return names
    return ()


@functools.lru_cache(maxsize=1)
def onednn_linear_available() -> bool:
    """This PyTorch build has the fused oneDNN linear kernel, and it computes a linear layer."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    # The global random state is put back afterwards: drawn from it, the first prediction of a process (a
    # training run's first validation) shifted every later dropout mask, and a run resumed in a new process
    # trained differently from the uninterrupted one.
    with torch.random.fork_rng(devices=[]):
        return _computes_a_linear_layer()


def _computes_a_linear_layer() -> bool:
    try:
        linear = nn.Linear(8, 4)
        x = torch.randn(3, 8)
        with torch.inference_mode(), torch.autocast("cpu", enabled=False):
            got = OneDnnLinear.of(linear, "gelu")(x).float()
            expected = nn.functional.gelu(linear(x))
        return bool(torch.allclose(got, expected, atol=0.05, rtol=0.05))
    except RuntimeError:
        return False


def exact_gelu(activation: Any) -> bool:
    """``activation`` is the erf GELU (transformers' "gelu", or nn.GELU()), which oneDNN can fuse."""
    if isinstance(activation, nn.GELU):
        return activation.approximate == "none"
    return type(activation).__name__ == "GELUActivation" and getattr(activation, "act", None) is nn.functional.gelu


@contextlib.contextmanager
def fused_cpu_inference(model: Any, enabled: bool = True):
    """Predict with ``model`` through oneDNN linear layers and bf16 attention; afterwards the model's
    own modules and attention come back (the weights themselves are never touched)."""
    if not enabled or not onednn_linear_available():
        yield model
        return
    swapped = []
    for parent in list(model.modules()):
        fuse_gelu = isinstance(getattr(parent, "dense", None), nn.Linear) and exact_gelu(
            getattr(parent, "intermediate_act_fn", None))
        projections = shared_projections(parent)
        if projections:
            shared = SharedProduct([getattr(parent, name) for name in projections])
            for index, name in enumerate(projections):
                swapped.append((parent, name, getattr(parent, name)))
                setattr(parent, name, ProjectionPart(shared, index))
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                activation = "gelu" if fuse_gelu and name == "dense" else "none"
                # a BERT layer's output projection meets the float32 residual next: bf16 + float32 has no
                # vectorized kernel (2.7 ms per 16 x 128 x 384 sum here), a cast and float32 sum 0.1 ms
                float_output = name == "dense" and hasattr(parent, "LayerNorm")
                setattr(parent, name, OneDnnLinear.of(child, activation, float_output))
                swapped.append((parent, name, child))
        if fuse_gelu:
            parent.intermediate_act_fn, act = nn.Identity(), parent.intermediate_act_fn
            swapped.append((parent, "intermediate_act_fn", act))
    attention = getattr(model.config, "_attn_implementation", None)
    bf16_eager = attention in ("eager", "sdpa")  # others: kernels of their own, or already bf16 (training's)
    if bf16_eager:
        if not getattr(model, "own_attention", False):  # tk's bare BERT (tk predict) picks it without transformers
            register_attention(ATTENTION, bf16_attention)
        try:
            model.set_attn_implementation(ATTENTION)
        except ValueError:  # a model that takes no attention function: it keeps its own
            bf16_eager = False
    try:
        yield model
    finally:
        for parent, name, child in reversed(swapped):
            setattr(parent, name, child)
        if bf16_eager:
            model.set_attn_implementation(attention)
