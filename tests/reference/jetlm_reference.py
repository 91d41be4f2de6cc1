"""Float64 PyTorch re-statement of the Jet-Nemotron / Qwen2 / Qwen3 model math.

Written from ../shared/SPEC.md and the official public model code (NVlabs/Jet-Nemotron,
jetai/modeling/hf: jet_block.py, dynamic_conv.py, modeling_jet_nemotron.py), not from the jetlm
engine. Everything is computed in float64 from the weights as stored (bf16/f16 weights are
widened exactly), token by token where the math is a recurrence, with explicit masks for attention:
slow and obviously right, which is what a reference should be.

    python3 jetlm_reference.py MODEL_DIR --ids 1,2,3      # prints the last position's top logits
"""
from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass, field

import torch
from safetensors.torch import load_file

F64 = torch.float64


@dataclass
class Config:
    model_type: str
    hidden: int
    intermediate: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    rms_eps: float
    rope_theta: float
    tie_embeddings: bool
    attn_bias: bool
    qk_norm: bool
    layer_types: list[str]
    swa_window: int = 0
    jet: dict = field(default_factory=dict)


def load_config(model_dir: str) -> Config:
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    mt = c["model_type"]
    hidden, heads = c["hidden_size"], c["num_attention_heads"]
    kv = c.get("num_key_value_heads", heads)
    n_layers = c["num_hidden_layers"]
    common = dict(model_type=mt, hidden=hidden, intermediate=c["intermediate_size"], n_layers=n_layers,
                  n_heads=heads, n_kv_heads=kv, vocab=c["vocab_size"], rms_eps=float(c.get("rms_norm_eps", 1e-6)),
                  rope_theta=float(c.get("rope_theta", 10000.0)),
                  tie_embeddings=bool(c.get("tie_word_embeddings", False)))
    if mt == "qwen2":
        return Config(**common, head_dim=hidden // heads, attn_bias=True, qk_norm=False, layer_types=["attn"] * n_layers)
    if mt == "qwen3":
        return Config(**common, head_dim=c.get("head_dim", hidden // heads), attn_bias=bool(c.get("attention_bias", False)),
                      qk_norm=True, layer_types=["attn"] * n_layers)
    if mt == "jet_nemotron":
        eac = c.get("efficient_attention_config", {})
        jet = dict(eac.get("jet", {}))
        if jet:
            dk = jet["head_dim"]
            dv = round(dk * float(jet["expand_v"]))
            jet = dict(H=jet["num_heads"], dk=dk, dv=dv, K=jet["conv_size"],
                       r=jet["dconv_generator_reduction"], eps=float(jet.get("norm_eps", 1e-5)))
        return Config(**common, head_dim=hidden // heads, attn_bias=True, qk_norm=False,
                      layer_types=list(c["layer_types"]),
                      swa_window=int(eac.get("swa", {}).get("window_size", 0)), jet=jet)
    raise ValueError(f"unknown model_type {mt}")


def load_weights(model_dir: str) -> dict[str, torch.Tensor]:
    index = os.path.join(model_dir, "model.safetensors.index.json")
    files = []
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for name in files:
        for k, v in load_file(os.path.join(model_dir, name)).items():
            weights[k] = v.to(F64)
    return weights


def rmsnorm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def silu(x):
    return x * torch.sigmoid(x)


def softplus(x):
    # log(1 + e^x) without overflow; torch's softplus switches to x above 20, equal in float64.
    return torch.where(x > 20, x, torch.log1p(torch.exp(torch.clamp(x, max=20))))


def rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """x: [T, heads, d]; HF rotate_half convention, positions 0..T-1."""
    T, _, d = x.shape
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=F64) / d))          # [d/2]
    angles = torch.arange(T, dtype=F64)[:, None] * inv_freq[None, :]             # [T, d/2]
    cos = torch.cat([angles.cos(), angles.cos()], -1)[:, None, :]                # [T, 1, d]
    sin = torch.cat([angles.sin(), angles.sin()], -1)[:, None, :]
    rotated = torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * cos + rotated * sin


def attention(cfg: Config, w: dict, p: str, x: torch.Tensor, window: int | None) -> torch.Tensor:
    """x: [T, D] normed input -> [T, D]. window: SWA W (token i sees j with i-W < j <= i) or None."""
    T = x.shape[0]
    H, KV, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim

    def proj(name, heads):
        y = x @ w[f"{p}.{name}.weight"].T
        if cfg.attn_bias:
            y = y + w[f"{p}.{name}.bias"]
        return y.view(T, heads, hd)

    q, k, v = proj("q_proj", H), proj("k_proj", KV), proj("v_proj", KV)
    if cfg.qk_norm:
        q = rmsnorm(q, w[f"{p}.q_norm.weight"], cfg.rms_eps)
        k = rmsnorm(k, w[f"{p}.k_norm.weight"], cfg.rms_eps)
    q, k = rope(q, cfg.rope_theta), rope(k, cfg.rope_theta)
    group = H // KV
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    allowed = j <= i
    if window is not None:
        allowed = allowed & (j > i - window)
    out = torch.empty(T, H, hd, dtype=F64)
    for h in range(H):
        scores = (q[:, h, :] @ k[:, h // group, :].T) / math.sqrt(hd)           # [T, T]
        scores = scores.masked_fill(~allowed, float("-inf"))
        out[:, h, :] = torch.softmax(scores, dim=-1) @ v[:, h // group, :]
    return out.reshape(T, H * hd) @ w[f"{p}.o_proj.weight"].T


def l2norm(x: torch.Tensor) -> torch.Tensor:
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-6)


def jet_block(cfg: Config, w: dict, p: str, x: torch.Tensor) -> torch.Tensor:
    """JetBlock on x: [T, D] normed input -> [T, D], recurrent (token by token) form."""
    T = x.shape[0]
    H, dk, dv, K = cfg.jet["H"], cfg.jet["dk"], cfg.jet["dv"], cfg.jet["K"]
    value_dim = H * dv
    q = silu(x @ w[f"{p}.q_proj.weight"].T).view(T, H, dk)
    k = silu(x @ w[f"{p}.k_proj.weight"].T).view(T, H, dk)
    u = x @ w[f"{p}.v_proj.weight"].T                                            # [T, value_dim]
    g_in = f"{p}.dynamic_conv1d.kernel_generator"
    kernel = silu(x @ w[f"{g_in}.w1.weight"].T) @ w[f"{g_in}.w2.weight"].T + w[f"{g_in}.w2.bias"]
    kernel = kernel.view(T, value_dim, K)                                         # channel-major, tap-minor
    u_padded = torch.cat([torch.zeros(K - 1, value_dim, dtype=F64), u], 0)       # u before t=0 is 0
    v = torch.empty(T, value_dim, dtype=F64)
    for t in range(T):
        window = u_padded[t : t + K, :]                                           # [K, value_dim], oldest first
        v[t] = silu((kernel[t] * window.T).sum(-1))
    v = v.view(T, H, dv)
    beta = torch.sigmoid(x @ w[f"{p}.b_proj.weight"].T)                           # [T, H]
    g = -torch.exp(w[f"{p}.A_log"]) * softplus(x @ w[f"{p}.a_proj.weight"].T + w[f"{p}.dt_bias"])  # [T, H]
    q = l2norm(q) * dk ** -0.5
    k = l2norm(k)
    S = torch.zeros(H, dk, dv, dtype=F64)
    o = torch.empty(T, H, dv, dtype=F64)
    for t in range(T):
        for h in range(H):
            S[h] = torch.exp(g[t, h]) * S[h]
            delta = beta[t, h] * (v[t, h] - S[h].T @ k[t, h])                     # [dv]
            S[h] = S[h] + torch.outer(k[t, h], delta)
            o[t, h] = S[h].T @ q[t, h]
    gate = (x @ w[f"{p}.g_proj.weight"].T).view(T, H, dv)
    o = rmsnorm(o, w[f"{p}.o_norm.weight"], cfg.jet["eps"]) * silu(gate)
    return o.reshape(T, value_dim) @ w[f"{p}.o_proj.weight"].T


def mlp(w: dict, p: str, x: torch.Tensor) -> torch.Tensor:
    gate = x @ w[f"{p}.gate_proj.weight"].T
    up = x @ w[f"{p}.up_proj.weight"].T
    return (silu(gate) * up) @ w[f"{p}.down_proj.weight"].T


def forward(cfg: Config, w: dict, ids: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Returns logits [T, vocab] and the hidden state after every layer (list of [T, D])."""
    x = w["model.embed_tokens.weight"][torch.tensor(ids, dtype=torch.long)]
    hidden = []
    for layer, kind in enumerate(cfg.layer_types):
        p = f"model.layers.{layer}"
        normed = rmsnorm(x, w[f"{p}.input_layernorm.weight"], cfg.rms_eps)
        if kind == "attn":
            mixed = attention(cfg, w, f"{p}.self_attn", normed, None)
        elif kind == "swa":
            mixed = attention(cfg, w, f"{p}.self_attn", normed, cfg.swa_window)
        elif kind == "jet":
            mixed = jet_block(cfg, w, f"{p}.self_attn", normed)
        else:
            raise ValueError(f"unknown layer type {kind}")
        x = x + mixed
        x = x + mlp(w, f"{p}.mlp", rmsnorm(x, w[f"{p}.post_attention_layernorm.weight"], cfg.rms_eps))
        hidden.append(x.clone())
    x = rmsnorm(x, w["model.norm.weight"], cfg.rms_eps)
    head = w["model.embed_tokens.weight"] if cfg.tie_embeddings else w["lm_head.weight"]
    return x @ head.T, hidden


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    ap.add_argument("--logits-out", help="write float32 [n_ids, vocab] little-endian logits here")
    args = ap.parse_args()
    cfg = load_config(args.model_dir)
    ids = [int(s) for s in args.ids.split(",")]
    logits, _ = forward(cfg, load_weights(args.model_dir), ids)
    if args.logits_out:
        logits.to(torch.float32).numpy().tofile(args.logits_out)
    top = torch.topk(logits[-1], 5)
    print("last position top-5:", [(int(i), round(float(v), 4)) for v, i in zip(top.values, top.indices)])


if __name__ == "__main__":
    main()
