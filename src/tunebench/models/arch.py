"""The shapes of a transformer: the handful of numbers that decide what it costs to train (width, depth,
heads, feed-forward width, vocabulary), and the parameter counts that follow from them.

The estimator resolves them from configs and presets (estimate/shapes.py); each method declares its own
costs in terms of them (methods/cost.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Linear:
    """One weight matrix of a transformer block, under a canonical name (q, k, v, o, gate, up, down)."""

    name: str
    d_in: int
    d_out: int


@dataclass(frozen=True)
class Arch:
    """The shapes of a transformer, decoder or encoder."""

    name: str
    kind: str
    """decoder (causal LM) or encoder."""
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    gated_mlp: bool
    """Three MLP matrices (gate, up, down) instead of two (up, down)."""
    tied_embeddings: bool = True
    positions: int = 0
    """Learned position embeddings (GPT-2/3, BERT); 0 for rotary models."""
    token_types: int = 0
    """BERT's segment embeddings."""
    attention_bias: bool = False
    qkv_bias: bool = False
    """Biases on the query, key and value projections only (Qwen 2)."""
    mlp_bias: bool = False
    layer_norm: bool = False
    """LayerNorm (weight and bias) rather than RMSNorm (weight only)."""
    norms_per_layer: int = 2
    qk_norm: bool = False
    """Gemma 3 / Qwen 3 normalise queries and keys (one head_dim vector each)."""
    pooler: bool = False
    """BERT's pooler (a d × d dense layer on the first token); tunebench's classification head and probe
    drop it (they pool the hidden states themselves), so it counts only without `classes`."""
    classes: int = 0
    """Outputs of a classification head that replaces the LM head (tunebench's `head: classifier`: one
    Linear layer with a bias on the pooled hidden states); 0: the model's own head over the vocabulary."""
    source: str = "preset"

    # ---- derived sizes -------------------------------------------------------------------------------
    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linears(self) -> list[Linear]:
        """The weight matrices of one block, in forward order."""
        d, ff = self.hidden, self.intermediate
        attn = [
            Linear("q", d, self.q_dim),
            Linear("k", d, self.kv_dim),
            Linear("v", d, self.kv_dim),
            Linear("o", self.q_dim, d),
        ]
        mlp = [Linear("gate", d, ff)] if self.gated_mlp else []
        return [*attn, *mlp, Linear("up", d, ff), Linear("down", ff, d)]

    def layer_linear_params(self) -> int:
        return sum(m.d_in * m.d_out for m in self.linears())

    def layer_params(self) -> int:
        """Every parameter of one block: matrices, biases and norms."""
        bias = 0
        if self.attention_bias or self.qkv_bias:
            bias += self.q_dim + 2 * self.kv_dim + (self.hidden if self.attention_bias else 0)
        if self.mlp_bias:
            bias += self.intermediate * (2 if self.gated_mlp else 1) + self.hidden
        norm = self.norms_per_layer * self.norm_params()
        if self.qk_norm:
            norm += 2 * self.head_dim
        return self.layer_linear_params() + bias + norm

    def norm_params(self) -> int:
        return self.hidden * (2 if self.layer_norm else 1)

    def embedding_params(self) -> int:
        return (self.vocab + self.positions + self.token_types) * self.hidden

    def head_params(self) -> int:
        """The output projection when it is not tied to the input embedding (decoders only), or the
        classification head (weight and bias) that replaces it."""
        if self.classes:
            return self.classes * (self.hidden + 1)
        return self.vocab * self.hidden if self.kind == "decoder" and not self.tied_embeddings else 0

    @property
    def outputs(self) -> int:
        """Width of the output layer: the classes of a classification head, else the vocabulary."""
        return self.classes or self.vocab

    @property
    def tied_head(self) -> bool:
        """The output layer is the input embedding's matrix (a trained head then trains the embedding)."""
        return self.tied_embeddings and not self.classes

    def outer_params(self) -> int:
        """Everything outside the blocks: embeddings, final norm (or BERT's embedding norm), head, pooler."""
        pooler = self.hidden * self.hidden + self.hidden if self.pooler and not self.classes else 0
        return self.embedding_params() + self.norm_params() + self.head_params() + pooler

    @property
    def params(self) -> int:
        """Total parameters; a tied embedding and head count once, as in `model.parameters()`."""
        return self.layers * self.layer_params() + self.outer_params()

    @property
    def linear_params(self) -> int:
        """Parameters in the blocks' weight matrices: what 4-bit quantization (QLoRA) compresses."""
        return self.layers * self.layer_linear_params()
