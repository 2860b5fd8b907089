"""A DeepSeek-V3-style causal LM in plain torch.

One file, read top to bottom: config, the (optionally block-FP8) linear layer, RMSNorm, YaRN rotary
frequencies, the latent KV cache, MLA attention (naive for prefill: the latent is decompressed to
per-head K/V; absorbed for decode: queries are folded into the latent space and scored against the
cache), the SwiGLU MLP, the noaux_tc router, the MoE block, the decoder layer and the whole model.
Numerics follow transformers' DeepseekV3 so the two can be cross-checked on the same weights; where
transformers and DeepSeek's reference code differ (YaRN applied at every length) we follow
transformers. How a quantized projection is computed (ref / emulate / triton) is `ops.py`'s job.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from .quant import weight_dequant


@dataclass(frozen=True)
class ModelArgs:
    vocab_size: int
    dim: int
    n_layers: int
    n_dense_layers: int
    inter_dim: int
    moe_inter_dim: int
    n_heads: int
    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    n_routed_experts: int
    n_shared_experts: int
    n_activated_experts: int
    n_expert_groups: int
    n_limited_groups: int
    route_scale: float
    norm_topk_prob: bool
    rms_norm_eps: float
    rope_theta: float
    # YaRN; rope_factor 1.0 means plain RoPE.
    rope_factor: float = 1.0
    original_seq_len: int = 4096
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float = 1.0
    mscale_all_dim: float = 0.0
    tie_word_embeddings: bool = False
    # The context length the checkpoint declares (max_position_embeddings); None when it declares none.
    max_seq_len: int | None = None

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any]) -> ModelArgs:
        """Reads a DeepseekV3ForCausalLM config.json; raises ValueError on settings this model lacks."""
        unsupported = {
            "hidden_act": ("silu", cfg.get("hidden_act", "silu")),
            "scoring_func": ("sigmoid", cfg.get("scoring_func", "sigmoid")),
            "topk_method": ("noaux_tc", cfg.get("topk_method", "noaux_tc")),
            "rope_interleave": (True, cfg.get("rope_interleave", True)),
            "attention_bias": (False, cfg.get("attention_bias", False)),
        }
        for key, (want, got) in unsupported.items():
            if got != want:
                raise ValueError(f"{key}={got!r} is not supported (only {want!r})")
        # transformers 5 writes `rope_parameters` (theta inside); Hub checkpoints carry the legacy
        # `rope_scaling` + `rope_theta`.
        rope = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in ("default", "yarn"):
            raise ValueError(f"rope type {rope_type!r} is not supported (only 'yarn' or 'default')")
        theta = float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
        yarn: dict[str, Any] = {}
        if rope_type == "yarn":
            original = int(rope["original_max_position_embeddings"])
            factor = rope.get("factor") or cfg["max_position_embeddings"] / original
            yarn = {
                "rope_factor": float(factor),
                "original_seq_len": original,
                "beta_fast": float(rope.get("beta_fast") or 32),
                "beta_slow": float(rope.get("beta_slow") or 1),
                "mscale": float(rope.get("mscale") or 0.0),
                "mscale_all_dim": float(rope.get("mscale_all_dim") or 0.0),
            }
        n_experts = cfg.get("n_routed_experts") or 0
        return cls(
            vocab_size=cfg["vocab_size"],
            dim=cfg["hidden_size"],
            n_layers=cfg["num_hidden_layers"],
            n_dense_layers=cfg["first_k_dense_replace"] if n_experts else cfg["num_hidden_layers"],
            inter_dim=cfg["intermediate_size"],
            moe_inter_dim=cfg["moe_intermediate_size"],
            n_heads=cfg["num_attention_heads"],
            q_lora_rank=cfg.get("q_lora_rank"),
            kv_lora_rank=cfg["kv_lora_rank"],
            qk_nope_head_dim=cfg["qk_nope_head_dim"],
            qk_rope_head_dim=cfg["qk_rope_head_dim"],
            v_head_dim=cfg["v_head_dim"],
            n_routed_experts=n_experts,
            n_shared_experts=cfg.get("n_shared_experts") or 0,
            n_activated_experts=cfg["num_experts_per_tok"],
            n_expert_groups=cfg.get("n_group") or 1,
            n_limited_groups=cfg.get("topk_group") or 1,
            route_scale=float(cfg.get("routed_scaling_factor", 1.0)),
            norm_topk_prob=bool(cfg.get("norm_topk_prob", True)),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_theta=theta,
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            max_seq_len=cfg.get("max_position_embeddings") or None,
            **yarn,
        )


class Linear(nn.Module):
    """A bias-free projection that may carry block-FP8 weights, like DeepSeek's reference `Linear`.

    `weight` holds FP8 codes on the triton path and dequantized values otherwise; `scale_inv` (the
    per-block multipliers) is None for a layer whose checkpoint weight was not quantized."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        self.scale_inv: torch.Tensor | None = None
        self.block: tuple[int, int] = (128, 128)
        self.precision: ops.Precision = "ref"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.linear(x, self.weight, self.scale_inv, self.block, self.precision)

    def seen_input(self, x: torch.Tensor) -> torch.Tensor:
        """x as this layer's GEMM effectively multiplies it (after activation quantization, if any)."""
        return ops.seen_input(x, self.precision, self.scale_inv is not None, self.block[1])

    def dense_weight(self) -> torch.Tensor:
        if self.weight.dtype == torch.float8_e4m3fn:
            assert self.scale_inv is not None
            return weight_dequant(self.weight, self.scale_inv, self.block)
        return self.weight


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fp32 statistics even for bf16 activations (DeepSeek reference fix adecc0e).
        x32 = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return self.weight * x32.to(x.dtype)


def _yarn_mscale(factor: float, mscale: float) -> float:
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def rope_frequencies(args: ModelArgs) -> tuple[torch.Tensor, float]:
    """YaRN frequencies of the interleaved rope pairs (on CPU) and the cos/sin magnitude.

    Built on an explicit CPU device so a model constructed on `meta` still gets real values."""
    dim, base = args.qk_rope_head_dim, args.rope_theta
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32, device="cpu") / dim))
    if args.rope_factor <= 1:
        return freqs, 1.0

    def correction_dim(rotations: float) -> float:
        # The pair index whose wavelength fits `rotations` times into the pretraining length.
        return dim * math.log(args.original_seq_len / (rotations * 2 * math.pi)) / (2 * math.log(base))

    lo = max(math.floor(correction_dim(args.beta_fast)), 0)
    hi = min(math.ceil(correction_dim(args.beta_slow)), dim - 1)
    if lo == hi:
        hi += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32, device="cpu") - lo) / (hi - lo)).clamp(0, 1)
    # High-frequency pairs (ramp 0) extrapolate unchanged; low-frequency ones interpolate.
    freqs = freqs / args.rope_factor * ramp + freqs * (1 - ramp)
    if args.mscale and args.mscale_all_dim:
        magnitude = _yarn_mscale(args.rope_factor, args.mscale) / _yarn_mscale(args.rope_factor, args.mscale_all_dim)
    else:
        magnitude = _yarn_mscale(args.rope_factor, 1.0)
    return freqs, magnitude


def apply_rotary(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotates interleaved pairs (x[2i], x[2i+1]) of x [B, T, H, d], read as complex numbers, by
    rotation [B, T, d/2] (complex: the YaRN magnitude times e^(i * angle))."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * rotation[:, :, None]).flatten(-2).to(x.dtype)


class LatentCache:
    """Per layer, what MLA needs of every past token: [normalized KV latent (as kv_b_proj sees it) |
    roped key shared by all heads] in one row, so decode scores both parts with a single matmul.
    576 values per token per layer in V3, against 128 x (192 + 128) for a per-head cache. `valid` [B, S]
    marks real (not left-padding) tokens. Storage grows by doubling, so a long `max_tokens` costs
    nothing until it is used."""

    def __init__(self, n_layers: int, batch: int, capacity: int, kv_dim: int, rope_dim: int,
                 dtype: torch.dtype, device: torch.device | str) -> None:
        self.kv_dim = kv_dim
        self.rows = [torch.zeros(batch, capacity, kv_dim + rope_dim, dtype=dtype, device=device)
                     for _ in range(n_layers)]
        self.valid = torch.zeros(batch, capacity, dtype=torch.bool, device=device)
        self.has_padding = False  # whether any cached position is left padding, which decode must mask
        self.length = 0

    def reserve(self, extra: int) -> None:
        """Makes room for `extra` more positions."""
        need, capacity = self.length + extra, self.valid.shape[1]
        if need <= capacity:
            return
        grow = max(need, 2 * capacity) - capacity

        def pad(t: torch.Tensor) -> torch.Tensor:
            return torch.cat([t, t.new_zeros(t.shape[0], grow, *t.shape[2:])], dim=1)

        self.rows = [pad(t) for t in self.rows]
        self.valid = pad(self.valid)

    def keep_rows(self, rows: torch.Tensor) -> None:
        self.rows = [t[rows] for t in self.rows]
        self.valid = self.valid[rows]


class MLA(nn.Module):
    """Multi-head latent attention: naive over a prompt, absorbed (latent-space) against a cache."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.n_heads = args.n_heads
        self.kv_lora_rank = args.kv_lora_rank
        self.qk_nope_head_dim = args.qk_nope_head_dim
        self.qk_rope_head_dim = args.qk_rope_head_dim
        self.v_head_dim = args.v_head_dim
        qk_head_dim = args.qk_nope_head_dim + args.qk_rope_head_dim
        if args.q_lora_rank is None:
            self.wq = Linear(args.dim, args.n_heads * qk_head_dim)
        else:
            self.wq_a = Linear(args.dim, args.q_lora_rank)
            self.q_norm = RMSNorm(args.q_lora_rank, args.rms_norm_eps)
            self.wq_b = Linear(args.q_lora_rank, args.n_heads * qk_head_dim)
        self.wkv_a = Linear(args.dim, args.kv_lora_rank + args.qk_rope_head_dim)
        self.kv_norm = RMSNorm(args.kv_lora_rank, args.rms_norm_eps)
        self.wkv_b = Linear(args.kv_lora_rank, args.n_heads * (args.qk_nope_head_dim + args.v_head_dim))
        self.wo = Linear(args.n_heads * args.v_head_dim, args.dim)
        self.absorbed_wkv_b: torch.Tensor | None = None
        # YaRN stretches attention logits' entropy; m^2 restores it (m applied to both q and k).
        self.softmax_scale = qk_head_dim**-0.5
        if args.rope_factor > 1 and args.mscale_all_dim:
            self.softmax_scale *= _yarn_mscale(args.rope_factor, args.mscale_all_dim) ** 2

    def forward(
        self,
        x: torch.Tensor,
        rotation: torch.Tensor,
        allowed: torch.Tensor | None,
        cache: LatentCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        """x [B, T, dim]; rotation [B, T, rope_dim / 2] from `Transformer.rotation`; allowed [B, T, S] is
        True where query t may attend to key s (None: every key), S = T without a cache, else the
        cache length after these T tokens are appended."""
        bsz, seqlen, _ = x.shape
        q = self.wq(x) if hasattr(self, "wq") else self.wq_b(self.q_norm(self.wq_a(x)))
        q = q.view(bsz, seqlen, self.n_heads, -1)
        q_nope, q_pe = q.split([self.qk_nope_head_dim, self.qk_rope_head_dim], dim=-1)
        q_pe = apply_rotary(q_pe, rotation)

        latent, k_pe = self.wkv_a(x).split([self.kv_lora_rank, self.qk_rope_head_dim], dim=-1)
        # One rope key shared by all heads: it carries position, the latent carries content.
        k_pe = apply_rotary(k_pe[:, :, None], rotation)[:, :, 0]
        latent = self.kv_norm(latent)
        start = 0 if cache is None else cache.length
        if cache is not None:
            # Cached as kv_b_proj's GEMM sees it, so absorbed decode does the same math as the naive prefill.
            rows = cache.rows[layer][:, start : start + seqlen]
            rows[..., : self.kv_lora_rank] = self.wkv_b.seen_input(latent)
            rows[..., self.kv_lora_rank :] = k_pe
        if start == 0:
            out = self._naive(q_nope, q_pe, latent, k_pe, allowed)
        else:
            assert cache is not None
            end = start + seqlen
            out = self._absorbed(q_nope, q_pe, cache.rows[layer][:, :end], allowed)
        return self.wo(out.flatten(2))

    def _naive(self, q_nope: torch.Tensor, q_pe: torch.Tensor, latent: torch.Tensor, k_pe: torch.Tensor,
               allowed: torch.Tensor | None) -> torch.Tensor:
        bsz, seqlen = latent.shape[:2]
        kv = self.wkv_b(latent).view(bsz, seqlen, self.n_heads, -1)
        k_nope, v = kv.split([self.qk_nope_head_dim, self.v_head_dim], dim=-1)
        q = torch.cat((q_nope, q_pe), dim=-1)
        k = torch.cat((k_nope, k_pe[:, :, None].expand(-1, -1, self.n_heads, -1)), dim=-1)
        scores = torch.einsum("bshd,bthd->bhst", q, k) * self.softmax_scale
        probs = self._softmax(scores, allowed).to(v.dtype)
        return torch.einsum("bhst,bthd->bshd", probs, v)

    def _absorbed(self, q_nope: torch.Tensor, q_pe: torch.Tensor, cached: torch.Tensor,
                  allowed: torch.Tensor | None) -> torch.Tensor:
        """Attention of queries [B, T, H, .] against cached rows [B, S, latent | rope]."""
        # q_nope . (W_k c) = (W_k^T q_nope) . c and P (W_v c) = W_v (P c): attention runs on the
        # r-dim latent and per-head keys/values are never built for the cached tokens.
        wkv_b = self.absorbed_weight()
        w_k, w_v = wkv_b[:, : self.qk_nope_head_dim], wkv_b[:, self.qk_nope_head_dim :]
        bsz, seqlen = q_nope.shape[:2]
        q = torch.cat([torch.einsum("bthd,hdc->bthc", q_nope, w_k), q_pe], dim=-1)
        scores = torch.matmul(q.flatten(1, 2), cached.transpose(1, 2))
        scores = scores.unflatten(1, (seqlen, self.n_heads)).transpose(1, 2)  # [B, H, T, S]
        probs = self._softmax(scores * self.softmax_scale, allowed).to(cached.dtype)
        context = torch.matmul(probs.transpose(1, 2).flatten(1, 2), cached[..., : self.kv_lora_rank])
        return torch.einsum("bthc,hdc->bthd", context.unflatten(1, (seqlen, self.n_heads)), w_v)

    def absorbed_weight(self) -> torch.Tensor:
        """kv_b_proj as [heads, nope + v, latent], dequantized once."""
        if self.absorbed_wkv_b is None:
            self.absorbed_wkv_b = self.wkv_b.dense_weight().view(self.n_heads, -1, self.kv_lora_rank)
        return self.absorbed_wkv_b

    @staticmethod
    def _softmax(scores: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        if allowed is not None:
            # A finite fill keeps fully masked rows (left-padding queries) NaN-free.
            scores = scores.masked_fill(~allowed[:, None], torch.finfo(scores.dtype).min)
        return scores.softmax(dim=-1, dtype=torch.float32)


class MLP(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x); also the shape of every expert."""

    def __init__(self, dim: int, inter_dim: int) -> None:
        super().__init__()
        self.w1 = Linear(dim, inter_dim)
        self.w2 = Linear(inter_dim, dim)
        self.w3 = Linear(dim, inter_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Gate(nn.Module):
    """The noaux_tc router: sigmoid affinities, bias-steered group-limited selection."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.topk = args.n_activated_experts
        self.n_groups = args.n_expert_groups
        self.topk_groups = args.n_limited_groups
        self.norm_topk_prob = args.norm_topk_prob
        self.route_scale = args.route_scale
        self.weight = nn.Parameter(torch.empty(args.n_routed_experts, args.dim))
        # The load-balancing bias lives in fp32 regardless of the model dtype.
        self.bias = nn.Parameter(torch.zeros(args.n_routed_experts, dtype=torch.float32), requires_grad=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, dim] -> (weights [N, k] fp32, expert indices [N, k])."""
        scores = F.linear(x.float(), self.weight.float()).sigmoid()
        # The bias only decides which experts run; the mixing weights stay the unbiased scores.
        choice = scores + self.bias
        if self.n_groups > 1:
            grouped = choice.unflatten(-1, (self.n_groups, -1))
            group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1)
            kept = group_scores.topk(self.topk_groups, dim=-1).indices
            dropped = torch.ones_like(group_scores, dtype=torch.bool).scatter_(1, kept, False)
            choice = grouped.masked_fill(dropped[..., None], float("-inf")).flatten(1)
        indices = choice.topk(self.topk, dim=-1).indices
        weights = scores.gather(1, indices)
        if self.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return weights * self.route_scale, indices


class MoE(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.gate = Gate(args)
        self.experts = nn.ModuleList(MLP(args.dim, args.moe_inter_dim) for _ in range(args.n_routed_experts))
        self.shared_experts = MLP(args.dim, args.n_shared_experts * args.moe_inter_dim)
        # The triton path's stacked expert weights: (w13 [E, 2I, H], its scales, w2 [E, H, I], its scales).
        self.packed: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def pack_experts(self) -> None:
        """Stacks the routed experts' FP8 codes and scales for the grouped kernel (gate rows, then up rows)."""
        experts = list(self.experts)
        self.packed = (
            torch.stack([torch.cat([e.w1.weight, e.w3.weight]) for e in experts]),
            torch.stack([torch.cat([e.w1.scale_inv, e.w3.scale_inv]) for e in experts]),
            torch.stack([e.w2.weight for e in experts]),
            torch.stack([e.w2.scale_inv for e in experts]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        weights, indices = self.gate(x)
        if self.packed is not None:
            y = ops.kernels().fused_moe(x, *self.packed, weights, indices).to(x.dtype)
        else:
            y = self._routed_loop(x, weights, indices)
        return (y + self.shared_experts(x)).view(shape)

    def _routed_loop(self, x: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        y = torch.zeros_like(x)
        counts = torch.bincount(indices.flatten(), minlength=len(self.experts)).tolist()
        for e, count in enumerate(counts):
            if count == 0:
                continue
            rows, slot = torch.where(indices == e)
            out = self.experts[e](x[rows]) * weights[rows, slot, None]
            y.index_add_(0, rows, out.to(y.dtype))
        return y


class Block(nn.Module):
    def __init__(self, layer_id: int, args: ModelArgs) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.attn_norm = RMSNorm(args.dim, args.rms_norm_eps)
        self.attn = MLA(args)
        self.ffn_norm = RMSNorm(args.dim, args.rms_norm_eps)
        self.ffn: nn.Module = MLP(args.dim, args.inter_dim) if layer_id < args.n_dense_layers else MoE(args)

    def forward(self, x: torch.Tensor, rotation: torch.Tensor, allowed: torch.Tensor | None,
                cache: LatentCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rotation, allowed, cache, self.layer_id)
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    """The main model only: multi-token-prediction layers are never built."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        self.embed = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(Block(i, args) for i in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.rms_norm_eps)
        self.head = nn.Linear(args.dim, args.vocab_size, bias=False)
        self.freqs, self.rope_magnitude = rope_frequencies(args)

    def rotation(self, positions: torch.Tensor) -> torch.Tensor:
        """Complex rotary factors [B, T, rope_dim / 2] for positions [B, T]: computed per call rather
        than read from a table, so any position works and nothing depends on the device."""
        angles = positions[..., None].float() * self.freqs.to(positions.device)
        return torch.polar(torch.full_like(angles, self.rope_magnitude), angles)

    @staticmethod
    def _attention_mask(seqlen: int, start: int, pad_mask: torch.Tensor | None,
                        cache: LatentCache | None, device: torch.device) -> torch.Tensor | None:
        """allowed [B, T, start + T]: query t sits at position start + t and sees real keys up to there.
        None when every key is allowed (one new token and no padding in the cache), which saves the masking."""
        if cache is None:
            keys = pad_mask
        else:
            if seqlen == 1 and not cache.has_padding:
                return None
            keys = cache.valid[:, : start + seqlen]
        causal = torch.ones(seqlen, start + seqlen, dtype=torch.bool, device=device).tril(start)[None]
        return causal if keys is None else causal & keys[:, None, :].bool()

    def new_cache(self, batch: int, capacity: int) -> LatentCache:
        args = self.args
        return LatentCache(args.n_layers, batch, capacity, args.kv_lora_rank, args.qk_rope_head_dim,
                           self.embed.weight.dtype, self.embed.weight.device)

    @torch.no_grad()
    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        pad_mask: torch.Tensor | None = None,
        cache: LatentCache | None = None,
        keep: int | None = None,
    ) -> torch.Tensor:
        """tokens [B, T] -> fp32 logits [B, T, vocab] (the last `keep` positions only, when given).

        positions [B, T] default to 0..T-1; pad_mask [B, T] is True for real tokens (left padding:
        pass positions that start at 0 on each row's first real token). With a `cache`, the tokens
        are appended to it and attend to everything cached before them."""
        bsz, seqlen = tokens.shape
        device = tokens.device
        if positions is None:
            positions = torch.arange(seqlen, device=device).expand(bsz, -1)
        start = 0 if cache is None else cache.length
        if cache is not None:
            cache.reserve(seqlen)
            if pad_mask is None:
                cache.valid[:, start : start + seqlen] = True
            else:
                cache.valid[:, start : start + seqlen] = pad_mask
                cache.has_padding = cache.has_padding or not bool(pad_mask.all())
        allowed = self._attention_mask(seqlen, start, pad_mask, cache, device)
        rotation = self.rotation(positions)
        h = self.embed(tokens)
        for layer in self.layers:
            h = layer(h, rotation, allowed, cache)
        if cache is not None:
            cache.length = start + seqlen
        if keep is not None:
            h = h[:, -keep:]
        return self.head(self.norm(h)).float()


def set_precision(model: Transformer, precision: ops.Precision) -> None:
    """Chooses how every quantized projection computes (see ops.py); the triton path packs the experts.

    ref and emulate share dequantized weights and can be switched freely; triton needs the FP8 codes,
    which only the loader keeps (load_checkpoint(..., precision="triton"))."""
    if precision not in ops.PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(ops.PRECISIONS)}")
    for module in model.modules():
        if isinstance(module, Linear):
            holds_codes = module.weight.dtype == torch.float8_e4m3fn
            if module.scale_inv is not None and holds_codes != (precision == "triton"):
                raise ValueError(
                    f"precision {precision!r} needs {'FP8 codes' if precision == 'triton' else 'dequantized weights'}; "
                    "load the checkpoint again with this precision"
                )
            module.precision = precision
        elif isinstance(module, MoE):
            module.packed = None
            if precision == "triton" and all(e.w1.scale_inv is not None for e in module.experts):
                module.pack_experts()
