"""A BERT encoder forward pass in plain NumPy float32, so MiniLM runs without PyTorch.

Weights are rearranged once at load time (transposed, Q/K/V fused, the attention
scale folded into Q) so that each layer is a handful of contiguous 2-D matmuls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]

# Abramowitz & Stegun 7.1.26: erfc(z) = poly(t) * exp(-z^2), t = 1 / (1 + p*z), z >= 0, with
# |error| < 1.5e-7, below float32 resolution. NumPy has no erf, and BERT uses the exact (erf)
# GELU, not the tanh approximation. GELU needs erf(|x|/sqrt2)/2, so 1/sqrt2 is folded into p
# and 1/2 into the coefficients, saving whole-array passes.
_GELU_P = np.float32(0.3275911 / math.sqrt(2.0))
_GELU_A = tuple(
    np.float32(0.5 * a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
)
_MASKED = np.float32(-1e9)


@dataclass(frozen=True, slots=True)
class EncoderLayer:
    """One transformer block with weights laid out for `x @ w` (in_features, out_features)."""

    w_qkv: F32
    b_qkv: F32
    w_attn_out: F32
    b_attn_out: F32
    ln_attn: tuple[F32, F32]
    w_up: F32
    b_up: F32
    w_down: F32
    b_down: F32
    ln_out: tuple[F32, F32]


@dataclass(frozen=True, slots=True)
class BertWeights:
    """Everything the forward pass needs, already in compute-friendly layout."""

    word: F32
    position: F32
    token_type0: F32
    ln_embed: tuple[F32, F32]
    layers: tuple[EncoderLayer, ...]
    num_heads: int
    eps: float

    @property
    def hidden(self) -> int:
        """Width of the hidden state (384 for MiniLM-L6)."""
        return int(self.word.shape[1])

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, NDArray[np.generic]], num_heads: int, eps: float
    ) -> BertWeights:
        """Build from HuggingFace `BertModel` tensor names (PyTorch Linear stores (out, in))."""

        def get(name: str) -> F32:
            return np.ascontiguousarray(state[name], dtype=np.float32)

        def linear_t(prefix: str) -> F32:
            return np.ascontiguousarray(get(prefix + ".weight").T)

        hidden = state["embeddings.word_embeddings.weight"].shape[1]
        scale = np.float32(1.0 / math.sqrt(hidden // num_heads))
        layers = []
        i = 0
        while f"encoder.layer.{i}.attention.self.query.weight" in state:
            p = f"encoder.layer.{i}."
            att = p + "attention.self."
            w_qkv = np.concatenate(
                [linear_t(att + "query") * scale, linear_t(att + "key"), linear_t(att + "value")],
                axis=1,
            )
            b_qkv = np.concatenate(
                [get(att + "query.bias") * scale, get(att + "key.bias"), get(att + "value.bias")]
            )
            layers.append(
                EncoderLayer(
                    w_qkv=np.ascontiguousarray(w_qkv),
                    b_qkv=b_qkv,
                    w_attn_out=linear_t(p + "attention.output.dense"),
                    b_attn_out=get(p + "attention.output.dense.bias"),
                    ln_attn=(
                        get(p + "attention.output.LayerNorm.weight"),
                        get(p + "attention.output.LayerNorm.bias"),
                    ),
                    w_up=linear_t(p + "intermediate.dense"),
                    b_up=get(p + "intermediate.dense.bias"),
                    w_down=linear_t(p + "output.dense"),
                    b_down=get(p + "output.dense.bias"),
                    ln_out=(get(p + "output.LayerNorm.weight"), get(p + "output.LayerNorm.bias")),
                )
            )
            i += 1
        if not layers:
            raise ValueError("state dict has no encoder layers; is this a BERT checkpoint?")
        return cls(
            word=get("embeddings.word_embeddings.weight"),
            position=get("embeddings.position_embeddings.weight"),
            token_type0=get("embeddings.token_type_embeddings.weight")[0].copy(),
            ln_embed=(get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias")),
            layers=tuple(layers),
            num_heads=num_heads,
            eps=eps,
        )


def _layer_norm_(x: F32, gamma_beta: tuple[F32, F32], eps: float) -> F32:
    """LayerNorm over the last axis, in place on `x` (which the caller owns)."""
    x -= x.mean(axis=-1, keepdims=True)
    var = np.einsum("ij,ij->i", x, x)[:, None]
    var *= np.float32(1.0 / x.shape[-1])
    var += np.float32(eps)
    np.sqrt(var, out=var)
    x /= var
    x *= gamma_beta[0]
    x += gamma_beta[1]
    return x


def _gelu_(x: F32) -> F32:
    """Exact (erf-based) GELU in place, via a polynomial erf accurate to 1.5e-7."""
    t = np.abs(x)
    t *= _GELU_P
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    half_erfc = t * _GELU_A[4]
    for a in _GELU_A[3::-1]:
        half_erfc += a
        half_erfc *= t
    gauss = np.square(x)
    gauss *= np.float32(-0.5)
    np.exp(gauss, out=gauss)
    half_erfc *= gauss  # erfc(|x|/sqrt2) / 2
    # GELU = x * (1 + erf(x/sqrt2)) / 2 = x * (1 - erfc/2) for x >= 0, x * erfc/2 for x < 0
    np.subtract(np.float32(1.0), half_erfc, out=half_erfc, where=x >= 0)
    x *= half_erfc
    return x


def _attention(qkv: F32, batch: int, seq: int, heads: int, mask_bias: F32 | None) -> F32:
    """Multi-head self-attention from the fused (B*L, 3H) projection; returns (B*L, H)."""
    hidden = qkv.shape[1] // 3
    d = hidden // heads
    q, k, v = qkv.reshape(batch, seq, 3, heads, d).transpose(2, 0, 3, 1, 4)
    scores = np.matmul(q, k.transpose(0, 1, 3, 2))  # (B, heads, L, L); Q already scaled
    if mask_bias is not None:
        scores += mask_bias
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    ctx = np.matmul(scores, v)  # (B, heads, L, d)
    return np.ascontiguousarray(ctx.transpose(0, 2, 1, 3)).reshape(batch * seq, hidden)


def encode_pooled(
    weights: BertWeights, input_ids: NDArray[np.int64], attention_mask: NDArray[np.int64]
) -> F32:
    """Run the encoder and mean-pool over real tokens, as sentence-transformers' Pooling does.

    Padded batches are packed: per-token work (all matmuls, GELU, LayerNorm) runs only on
    real tokens, and only attention sees the padded (B, L) layout. With goals of mixed
    length this roughly halves the work of a batch compared with padding everywhere.
    Returns (B, H).
    """
    batch, seq = input_ids.shape
    if seq > weights.position.shape[0]:
        raise ValueError(f"sequence of {seq} tokens exceeds {weights.position.shape[0]} positions")
    lengths = attention_mask.sum(axis=1)
    if batch and int(lengths.min()) < 1:
        raise ValueError("every sequence needs at least one attended token")
    real = attention_mask.reshape(-1) > 0
    packed = None if real.all() else np.flatnonzero(real)  # row-major: each sequence contiguous
    flat_ids = input_ids.reshape(-1)
    if packed is None:
        x = weights.word[flat_ids]
        x.reshape(batch, seq, -1)[...] += weights.position[:seq]
    else:
        x = weights.word[flat_ids[packed]]
        x += weights.position[packed % seq]
    x += weights.token_type0
    eps = weights.eps
    _layer_norm_(x, weights.ln_embed, eps)
    mask_bias = None
    if packed is not None:
        mask_bias = np.where(attention_mask[:, None, None, :] > 0, np.float32(0.0), _MASKED)
        mask_bias = mask_bias.astype(np.float32)
    for layer in weights.layers:
        qkv = x @ layer.w_qkv
        qkv += layer.b_qkv
        if packed is not None:
            padded = np.zeros((batch * seq, qkv.shape[1]), dtype=np.float32)
            padded[packed] = qkv
            qkv = padded
        ctx = _attention(qkv, batch, seq, weights.num_heads, mask_bias)
        if packed is not None:
            ctx = ctx[packed]
        attn = ctx @ layer.w_attn_out
        attn += layer.b_attn_out
        attn += x
        x = _layer_norm_(attn, layer.ln_attn, eps)
        up = x @ layer.w_up
        up += layer.b_up
        down = _gelu_(up) @ layer.w_down
        down += layer.b_down
        down += x
        x = _layer_norm_(down, layer.ln_out, eps)
    if packed is None:
        pooled: F32 = x.reshape(batch, seq, -1).mean(axis=1, dtype=np.float32)
        return pooled
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    pooled = np.add.reduceat(x, starts, axis=0)
    pooled /= lengths[:, None].astype(np.float32)
    return pooled
