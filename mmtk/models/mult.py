"""The Multimodal Transformer (MulT: Tsai, Bai, Liang, Kolter, Morency, Salakhutdinov,
"Multimodal Transformer for Unaligned Multimodal Language Sequences", ACL 2019), with
late fusion by concatenation (MulT-Concat, the paper's) or by a Gated Multimodal Unit
(MulT-GMU: Rodríguez-Bribiesca, López-Monroy, Montes-y-Gómez, "Multimodal Weighted
Fusion of Transformers for Movie Genre Classification", NAACL MAI workshop 2021).

Each sequence input ``(B, T_m, d_m)`` goes through a 1-D temporal convolution to
``width`` channels, is scaled by ``sqrt(width)`` and gets sinusoidal positions. For every
ordered pair (target, source) of sequence inputs a crossmodal transformer of ``layers``
pre-LayerNorm blocks lets the target's steps (queries) attend to the source's embedded
steps (keys and values, the same low-level source at every block, as in the paper).
Each target's crossmodal outputs are concatenated along features and go through
``self_layers`` self-attention blocks; the last valid step of each (``pool=last``, the
paper's) or the mean of its valid steps (``pool=mean``) is that modality's vector. Late
fusion concatenates them and applies the reference's residual block (``fusion=concat``)
or mixes them with ``mmtk.models.gmu.GatedMultimodalUnit`` (``fusion=gmu``, whose gates
``explain`` reports). Vector inputs (a poster vector, ``tabular``) join at late fusion.

Where this differs from the reference code (github.com/yaohungt/Multimodal-Transformer)
and why:

- Padding is masked everywhere: key-padding masks in every attention (the reference has
  none and attends to padded steps, and its default causal mask is not used: the
  features here are not a stream read left to right), padded steps are zeroed before the
  convolution (so a kernel wider than 1 does not read them), and pooling reads valid
  steps only. An item's output does not depend on how long the other items of its
  batch are.
- An absent modality (``batch.present`` False, or no valid step) is masked out of every
  attention and of late fusion: the crossmodal streams it is the source of are zeros,
  its own pooled vector is zeros, and under ``fusion=gmu`` its gate score is -inf (what
  ``GatedMultimodalUnit`` does with ``present``). Attention over no valid key attends
  over every step instead of dividing 0 by 0, and its result is discarded by the
  zeroing above, so such items give finite outputs and zero gradients there.
- Any number of sequence inputs: ``S (S - 1)`` crossmodal transformers and ``S``
  self-attention stacks of width ``(S - 1) * width``. With a single sequence input there
  is no pair: its self-attention stack reads its own projection.
- ``pool=mean`` and vector inputs at late fusion are additions. With ``fusion=concat`` a
  vector input is normalised and projected to the width of one sequence's stream, so
  every modality has an equal share of the concatenation; the residual block's inner
  width is ``hidden`` (the reference uses the concatenation's width; pass that to match).
- The reference applies its embedding dropout to the text input a second time before the
  projection; here embedding dropout is applied where the encoders take their inputs.
- Speed: the transformers of one stage that see inputs of equal padded length (every
  pair on aligned data) run as one batched computation over stacked weights
  (``GroupedEncoder``), with fused query/key/value projections,
  ``scaled_dot_product_attention``, LayerNorm scale and shift folded into the
  projections that follow them, and on the CPU a cheaper dropout (its probability
  rounded to a multiple of 2^-16) and attention with dropout written out (torch's
  fused CPU kernel has no dropout). BENCHMARKS.md ("mult against the reference MulT")
  has the measured effects: 1.40x the reference's training samples/s, short of the
  issue's 1.5x.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmtk.models.common import TaskHeads, check_dims, item_norm
from mmtk.models.gmu import GatedMultimodalUnit
from mmtk.training.batch import Batch, as_batch

POOLS = ("last", "mean")
FUSIONS = ("concat", "gmu")


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout``, except that on the CPU the keep mask is drawn as 16 random bits per
    element (``p`` rounded to a multiple of 2^-16) compared straight into a float mask:
    torch's CPU Bernoulli sampling costs about 20 multiplies per element (16 ms against
    0.8 ms for 1.8M floats on one thread), and converting a bool mask to float 1.3 ms,
    which made dropout the largest cost of a training step."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    dropped = round(p * 65536)
    bits = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-(2**63), None).view(torch.int16)[: x.numel()]
    keep = torch.ge(bits.view(x.shape), dropped - 32768, out=torch.empty(x.shape, dtype=x.dtype))
    return x * keep.mul_(65536 / (65536 - dropped))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``scaled_dot_product_attention(q, k, v, attn_mask)`` (``(N, heads, T, d)``, a bool
    mask ``(N, 1, 1, S)``) with dropout ``p`` on the attention weights while training.
    On the CPU torch runs attention with dropout on its unfused math path, 3x the time
    without dropout here; that case is written out as one masked, scaled batched product,
    softmax, the cheaper ``dropout`` above, and a product with the values (1.7x faster
    forward and backward at the crossmodal stage's shapes)."""
    if not training or p == 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p if training else 0.0)
    n, heads, steps, width = q.shape
    sources = k.shape[2]
    bias = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~attn_mask, float("-inf"))
    scores = torch.baddbmm(
        bias.expand(n, heads, 1, sources).reshape(n * heads, 1, sources),
        q.reshape(n * heads, steps, width), k.reshape(n * heads, sources, width).transpose(1, 2), alpha=width ** -0.5,
    )
    weights = dropout(torch.softmax(scores, dim=-1), p, True)
    return torch.bmm(weights, v.reshape(n * heads, sources, width)).view(n, heads, steps, width)


class GroupedLinear(nn.Module):
    """``groups`` independent linear maps applied to ``(G, N, d_in)`` in one batched
    matrix product; ``select`` (a long tensor of group indices) picks a subset."""

    def __init__(self, groups: int, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(groups, d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(groups, 1, d_out))
        bound = math.sqrt(6.0 / (d_in + d_out))  # Xavier-uniform per group, as the reference's layers
        nn.init.uniform_(self.weight, -bound, bound)

    def params(self, select: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if select is None:
            return self.weight, self.bias
        return self.weight.index_select(0, select), self.bias.index_select(0, select)

    def forward(self, x: torch.Tensor, select: torch.Tensor | None = None) -> torch.Tensor:
        weight, bias = self.params(select)
        return torch.baddbmm(bias, x, weight)


class GroupedNorm(nn.Module):
    """``groups`` LayerNorms over the last dimension of ``(G, ..., d)``."""

    def __init__(self, groups: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(groups, width))
        self.bias = nn.Parameter(torch.zeros(groups, width))

    def params(self, select: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if select is None:
            return self.weight, self.bias
        return self.weight.index_select(0, select), self.bias.index_select(0, select)

    def forward(self, x: torch.Tensor, select: torch.Tensor | None = None) -> torch.Tensor:
        weight, bias = self.params(select)
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        return torch.addcmul(bias.view(shape), F.layer_norm(x, x.shape[-1:]), weight.view(shape))

    def folded(self, linear: GroupedLinear, select: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``linear`` after this norm's scale and shift, as the weight and bias of one
        affine map of the plain normalised input: ``(x * g + b) W + c = x (g W) + (b W + c)``.
        The same function and parameters, computed on ``(d, d')`` matrices instead of two
        passes (and their backward) over the activations."""
        gain, shift = self.params(select)
        weight, bias = linear.params(select)
        return gain[:, :, None] * weight, torch.baddbmm(bias, shift[:, None, :], weight)


def normalised(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm without scale and shift (``GroupedNorm.folded`` applies them)."""
    return F.layer_norm(x, x.shape[-1:])


class GroupedLayer(nn.Module):
    """One pre-LayerNorm transformer block per group: attention (self-attention, or
    crossmodal when ``source`` is given: queries from ``x``, keys and values from
    ``source``, both through the block's first LayerNorm as in the reference; ``source``
    comes already normalised without scale and shift, which the block folds into its
    projection), then a ReLU feed-forward layer of 4x the width, each with a residual
    connection."""

    def __init__(self, groups: int, width: int, num_heads: int, *, attn_dropout: float | Sequence[float], relu_dropout: float,
                 res_dropout: float):
        super().__init__()
        self.width, self.num_heads = width, num_heads
        # One attention dropout per group (the reference sets it per target modality).
        self.attn_dropout = [float(attn_dropout)] * groups if isinstance(attn_dropout, (int, float)) else [float(p) for p in attn_dropout]
        if len(self.attn_dropout) != groups:
            raise ValueError(f"{len(self.attn_dropout)} attention dropouts for {groups} groups")
        self.relu_dropout, self.res_dropout = relu_dropout, res_dropout
        self.norm_attn = GroupedNorm(groups, width)
        self.in_proj = GroupedLinear(groups, width, 3 * width)  # queries, keys, values fused
        self.out_proj = GroupedLinear(groups, width, width)
        self.norm_ffn = GroupedNorm(groups, width)
        self.fc1 = GroupedLinear(groups, width, 4 * width)
        self.fc2 = GroupedLinear(groups, 4 * width, width)

    def forward(self, x: torch.Tensor, source: torch.Tensor | None, attn_mask: torch.Tensor, select: torch.Tensor | None) -> torch.Tensor:
        g, b, t, d = x.shape
        h = normalised(x).reshape(g, b * t, d)
        weight, bias = self.norm_attn.folded(self.in_proj, select)
        if source is None:
            s = t
            q, k, v = torch.baddbmm(bias, h, weight).chunk(3, dim=-1)
        else:
            s = source.shape[2]
            keys = source.reshape(g, b * s, d)
            q = torch.baddbmm(bias[..., :d], h, weight[..., :d])
            k, v = torch.baddbmm(bias[..., d:], keys, weight[..., d:]).chunk(2, dim=-1)
        heads, head_dim = self.num_heads, d // self.num_heads
        q = q.reshape(g * b, t, heads, head_dim).transpose(1, 2)
        k = k.reshape(g * b, s, heads, head_dim).transpose(1, 2)
        v = v.reshape(g * b, s, heads, head_dim).transpose(1, 2)
        attended = self._attend(q, k, v, attn_mask, b, select)
        attended = attended.transpose(1, 2).reshape(g, b * t, d)
        x = x + dropout(self.out_proj(attended, select).view(g, b, t, d), self.res_dropout, self.training)
        weight, bias = self.norm_ffn.folded(self.fc1, select)
        h = F.relu(torch.baddbmm(bias, normalised(x).reshape(g, b * t, d), weight), inplace=True)
        h = self.fc2(dropout(h, self.relu_dropout, self.training), select)
        return x + dropout(h.view(g, b, t, d), self.res_dropout, self.training)

    def _attend(self, q, k, v, attn_mask, batch: int, select: torch.Tensor | None) -> torch.Tensor:
        """Attention of the groups' stacked queries ``(G * B, heads, T, d)``, each run of
        consecutive groups with one dropout probability in one call: groups without
        dropout keep the fused kernel instead of paying for a mask they do not use."""
        probs = self.attn_dropout if select is None else [self.attn_dropout[i] for i in select.tolist()]
        if not self.training or len(set(probs)) == 1:
            return attention(q, k, v, attn_mask, probs[0], self.training)
        parts, start = [], 0
        for end in range(1, len(probs) + 1):
            if end == len(probs) or probs[end] != probs[start]:
                rows = slice(start * batch, end * batch)
                parts.append(attention(q[rows], k[rows], v[rows], attn_mask[rows], probs[start], True))
                start = end
        return torch.cat(parts)


class GroupedEncoder(nn.Module):
    """``groups`` independent transformer encoders of one shape (``layers`` blocks and a
    final LayerNorm each), run together: inputs are stacked ``(G, B, T, d)``, so a
    stage's transformers cost one set of batched kernels instead of one per transformer.
    ``select`` runs only some of the groups (those whose inputs share a padded length)."""

    def __init__(self, groups: int, width: int, num_heads: int, layers: int, *, embed_dropout: float, **dropouts):
        super().__init__()
        self.width, self.embed_dropout = width, embed_dropout
        self.layers = nn.ModuleList(GroupedLayer(groups, width, num_heads, **dropouts) for _ in range(layers))
        self.norm = GroupedNorm(groups, width)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, source: torch.Tensor | None = None,
                select: torch.Tensor | None = None) -> torch.Tensor:
        """``x``/``source``: embedded inputs ``(G, B, T, d)``/``(G, B, S, d)``;
        ``key_mask``: bool ``(G, B, S)`` (``(G, B, T)`` for self-attention), True at keys
        that may be attended to. A row without any is given every key (its output is
        finite, and the caller discards it)."""
        g, b, steps = key_mask.shape
        attn_mask = (key_mask | ~key_mask.any(dim=-1, keepdim=True)).reshape(g * b, 1, 1, steps)
        x = dropout(x, self.embed_dropout, self.training)
        if source is not None:
            # Every block reads the same source through its first LayerNorm, whose scale
            # and shift it folds into its projection: the plain normalisation is shared.
            source = normalised(dropout(source, self.embed_dropout, self.training))
        for layer in self.layers:
            x = layer(x, source, attn_mask, select)
        return self.norm(x, select)


def sinusoids(steps: int, width: int, device, dtype) -> torch.Tensor:
    """``(steps, width)`` sinusoidal positions (sines in the first half, cosines in the
    second, as the reference's fairseq table; a zero column for an odd width)."""
    half = width // 2
    rates = torch.exp(torch.arange(half, device=device, dtype=torch.float32) * -(math.log(10000.0) / max(half - 1, 1)))
    angles = torch.arange(steps, device=device, dtype=torch.float32)[:, None] * rates[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles), torch.zeros(steps, width % 2, device=device)], dim=1)
    return table.to(dtype)


def embed(x: torch.Tensor) -> torch.Tensor:
    """Scale ``(..., T, d)`` by ``sqrt(d)`` and add positions (the reference's embedding)."""
    return x * math.sqrt(x.shape[-1]) + sinusoids(x.shape[-2], x.shape[-1], x.device, x.dtype)


def buckets(keys: list) -> list[list[int]]:
    """Indices grouped by equal key, in first-seen order."""
    groups: dict = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return list(groups.values())


class ConcatFusion(nn.Module):
    """MulT-Concat's late fusion: the modality vectors concatenated, then the reference's
    residual block (``Linear -> ReLU -> dropout -> Linear``, plus its input) and a head
    per task. Vector inputs are normalised and projected to ``stream`` features first;
    an absent input enters as zeros."""

    def __init__(self, names: list[str], stream: int, vectors: dict[str, int], heads: dict[str, int], *, hidden: int, dropout: float):
        super().__init__()
        self.names, self.vector_names = names, [n for n in names if n in vectors]
        self.vector_norms = nn.ModuleList(item_norm(vectors[n]) for n in self.vector_names)
        self.vector_projections = nn.ModuleList(nn.Linear(vectors[n], stream) for n in self.vector_names)
        self.width = stream * len(names)
        self.proj1, self.proj2 = nn.Linear(self.width, hidden), nn.Linear(hidden, self.width)
        self.dropout = dropout
        self.heads = TaskHeads(self.width, heads)

    def represent(self, batch: Batch) -> torch.Tensor:
        features = dict(batch.features)
        for name, norm, projection in zip(self.vector_names, self.vector_norms, self.vector_projections):
            features[name] = projection(norm(features[name]))
        parts = [features[n] if batch.is_present(n) is None else features[n] * batch.is_present(n)[:, None] for n in self.names]
        joined = torch.cat(parts, dim=-1)
        return joined + self.proj2(dropout(F.relu(self.proj1(joined)), self.dropout, self.training))

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.heads(self.represent(batch))


class MultimodalTransformer(nn.Module):
    """``forward(batch) -> {task: logits}``; ``represent(batch)`` is the late fusion's
    output ``(B, width)``. Built by ``mmtk.models.catalog.mult`` (see its parameters).
    ``inputs``: ``{name: InputSpec}`` with at least one sequence input."""

    def __init__(self, inputs: dict, heads: dict[str, int], *, width: int = 30, num_heads: int = 5, layers: int = 5,
                 self_layers: int = 5, kernel_size: int = 1, embed_dropout: float = 0.25, attn_dropout: float = 0.1,
                 relu_dropout: float = 0.1, res_dropout: float = 0.1, hidden: int = 128, dropout: float = 0.0,
                 pool: str = "last", fusion: str = "concat", cross_attn_dropout: Mapping[str, float] | None = None):
        super().__init__()
        dims = {name: int(getattr(spec, "dim", spec)) for name, spec in inputs.items()}
        check_dims(dims, heads)
        self.names = list(dims)
        self.sequences = [n for n in self.names if getattr(inputs[n], "is_sequence", False)]
        if not self.sequences:
            raise ValueError("mult needs at least one sequence input")
        if width % num_heads or kernel_size % 2 == 0 or pool not in POOLS or fusion not in FUSIONS:
            raise ValueError(f"bad mult parameters: width={width} num_heads={num_heads} kernel_size={kernel_size} pool={pool!r} fusion={fusion!r}")
        self.pool = pool
        count = len(self.sequences)
        self.pairs = [(t, s) for t in range(count) for s in range(count) if s != t]
        self.projections = nn.ModuleList(
            nn.Conv1d(dims[n], width, kernel_size, padding=kernel_size // 2, bias=False) for n in self.sequences
        )
        blocks = {"num_heads": num_heads, "embed_dropout": embed_dropout, "attn_dropout": attn_dropout,
                  "relu_dropout": relu_dropout, "res_dropout": res_dropout}
        # The crossmodal transformers into a target named in cross_attn_dropout use its
        # attention dropout (the reference: attn_dropout into text, attn_dropout_a/_v,
        # 0 by default, into audio and vision); the others and self-attention use attn_dropout.
        cross = dict(cross_attn_dropout or {})
        unknown = sorted(set(cross) - set(self.sequences))
        if unknown:
            raise ValueError(f"cross_attn_dropout names {unknown}, which are not sequence inputs ({self.sequences})")
        crossmodal = {**blocks, "attn_dropout": [cross.get(self.sequences[t], attn_dropout) for t, _ in self.pairs]}
        self.crossmodal = GroupedEncoder(len(self.pairs), width, layers=layers, **crossmodal) if self.pairs else None
        self.stream = width * max(count - 1, 1)
        self.self_attention = GroupedEncoder(count, self.stream, layers=self_layers, **blocks)
        vectors = {n: dims[n] for n in self.names if n not in self.sequences}
        if fusion == "gmu":
            self.fusion = GatedMultimodalUnit({n: self.stream if n in self.sequences else dims[n] for n in self.names}, heads,
                                              hidden=hidden, dropout=dropout)
        else:
            self.fusion = ConcatFusion(self.names, self.stream, vectors, heads, hidden=hidden, dropout=dropout)
        self.width = self.fusion.width

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return self.fusion(self.late_inputs(batch))

    def represent(self, batch) -> torch.Tensor:
        return self.fusion.represent(self.late_inputs(batch))

    def late_inputs(self, batch) -> Batch:
        """What late fusion reads: each sequence input's pooled vector ``(B, stream)``
        and each vector input, with ``present`` False where an item lacks the input."""
        batch = as_batch(batch)
        masks, present, embedded = {}, {}, []
        for name, projection in zip(self.sequences, self.projections):
            x = batch.features[name]
            mask = batch.masks.get(name)
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask
            there = batch.is_present(name)
            mask = mask if there is None else mask & there[:, None]
            x = torch.where(mask[..., None], x, 0.0)
            masks[name], present[name] = mask, mask.any(dim=1)
            embedded.append(projection(x.transpose(1, 2)).transpose(1, 2))
        streams = self._crossmodal(embedded, [masks[n] for n in self.sequences], [present[n] for n in self.sequences])
        outputs = self._self_attention(streams, [masks[n] for n in self.sequences])
        features = {}
        for name, out in zip(self.sequences, outputs):
            features[name] = self._pool(out, masks[name]) * present[name][:, None]
        for name in self.names:
            if name not in features:
                features[name] = batch.features[name]
                if batch.is_present(name) is not None:
                    present[name] = batch.is_present(name)
        return Batch(features={n: features[n] for n in self.names}, present=present)

    def _crossmodal(self, projected: list[torch.Tensor], masks: list[torch.Tensor], present: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per target, its crossmodal outputs concatenated along features ``(B, T_t,
        stream)``; with one sequence input, its projection."""
        if self.crossmodal is None:
            return projected
        embedded = [embed(x) for x in projected]
        outputs: list[torch.Tensor | None] = [None] * len(self.pairs)
        lengths = [(projected[t].shape[1], projected[s].shape[1]) for t, s in self.pairs]
        for idx in buckets(lengths):
            pairs = [self.pairs[i] for i in idx]
            select = None if len(idx) == len(self.pairs) else torch.tensor(idx, device=projected[0].device)
            queries = torch.stack([embedded[t] for t, _ in pairs])
            sources = torch.stack([embedded[s] for _, s in pairs])
            key_mask = torch.stack([masks[s] for _, s in pairs])
            out = self.crossmodal(queries, key_mask, sources, select)
            # A source an item lacks contributes nothing to the target's stream.
            out = out * torch.stack([present[s] for _, s in pairs])[:, :, None, None]
            for i, o in zip(idx, out.unbind(0)):
                outputs[i] = o
        per_target = len(self.sequences) - 1
        return [torch.cat(outputs[t * per_target:(t + 1) * per_target], dim=-1) for t in range(len(self.sequences))]

    def _self_attention(self, streams: list[torch.Tensor], masks: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs: list[torch.Tensor | None] = [None] * len(streams)
        for idx in buckets([x.shape[1] for x in streams]):
            select = None if len(idx) == len(streams) else torch.tensor(idx, device=streams[0].device)
            out = self.self_attention(embed(torch.stack([streams[i] for i in idx])), torch.stack([masks[i] for i in idx]), None, select)
            for i, o in zip(idx, out.unbind(0)):
                outputs[i] = o
        return outputs

    def _pool(self, out: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pool == "mean":
            weights = mask.to(out.dtype)[..., None]
            return (out * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        # The highest valid index (sources pad on the right, but a mask need not be a
        # prefix); an item with none reads step 0, which the caller zeroes.
        steps = torch.arange(mask.shape[1], device=mask.device)
        last = torch.where(mask, steps, 0).amax(dim=1)
        return out[torch.arange(len(out), device=out.device), last]


class GatedMultimodalTransformer(MultimodalTransformer):
    """MulT-GMU: ``fusion="gmu"``, whose gates are per-modality weights."""

    def __init__(self, inputs: dict, heads: dict[str, int], **params):
        super().__init__(inputs, heads, **{**params, "fusion": "gmu"})

    @torch.no_grad()
    def explain(self, batch) -> dict[str, torch.Tensor]:
        """Per item, each input's mean gate weight in the late-fusion GMU (rows sum to 1;
        an absent input gets 0)."""
        return self.fusion.explain(self.late_inputs(batch))
