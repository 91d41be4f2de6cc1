"""Writes the golden test cases under tests/golden/data/<case>/ from the float64 reference.

Each case is a tiny random-weight Hugging Face model directory (config.json + model.safetensors,
or two shards + model.safetensors.index.json) and golden.safetensors with:
    ids            I32 [T]          the input sequence
    logits         F32 [T, vocab]   reference logits at every position
    hidden.<l>     F32 [T, D]       reference hidden state after layer l
    greedy.prompt  I32 [P]          (fp32 cases) prompt of a greedy continuation
    greedy.tokens  I32 [G]          reference greedy continuation (every step's top-1 margin is checked)
and metadata {"tolerance": ...}: max|engine - reference| / max|reference| allowed.

The cases cover every family and layer-kind mix, sequences that cross several 64-token GDN chunks
and wrap the SWA window, GQA ratios > 1, head dims that are not powers of two and value dims
that are not multiples of the SIMD width, tied and untied heads, sharded checkpoints, bf16/f16/f32
storage, and decays strong enough (g ~ -50 per token) to break naive exp(G) * exp(-G) forms.

    python3 tests/reference/make_goldens.py [--out tests/golden/data] [--only CASE]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil

import torch
from safetensors.torch import save_file

import jetlm_reference as ref

STORAGE = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def base_config(model_type: str, **overrides) -> dict:
    c = {
        "architectures": ["JetNemotronForCausalLM" if model_type == "jet_nemotron" else "Qwen2ForCausalLM"],
        "model_type": model_type,
        "hidden_size": 72,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 3,
        "num_key_value_heads": 1,
        "vocab_size": 256,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    c.update(overrides)
    return c


def jet_config(layer_types, window, heads, dk, expand_v, conv, reduction, **overrides) -> dict:
    c = base_config("jet_nemotron", num_hidden_layers=len(layer_types), layer_types=layer_types, **overrides)
    c["efficient_attention_config"] = {
        "jet": {"conv_size": conv, "dconv_generator_reduction": reduction, "dconv_implementation": "triton",
                "expand_v": expand_v, "head_dim": dk, "mode": "chunk", "norm_eps": "1e-5", "num_heads": heads},
        "swa": {"window_size": window},
    }
    return c


CASES = {
    # The released 2B's mix in miniature: full attention, SWA with a 7-token window, JetBlocks with
    # dk 24, dv 36 (value_dim 108, not a multiple of 8), attention head dim 24 with GQA 3.
    # Untied head: with a tied one, random models fall into repeating one token, which makes the
    # greedy golden weak.
    "jet_mix_f32": dict(config=jet_config(["jet", "attn", "jet", "swa", "jet"], 7, 3, 24, 1.5, 4, 6,
                                          tie_word_embeddings=False),
                        storage="f32", tolerance=1e-4, T=150, seed=1),
    # bf16 storage, untied head, two shards, conv size 3, dk 32 / dv 40, window 5.
    "jet_mix_bf16_sharded": dict(config=jet_config(["swa", "jet", "attn", "jet"], 5, 2, 32, 1.25, 3, 5, num_attention_heads=6, num_key_value_heads=2,
                                                   tie_word_embeddings=False, torch_dtype="bfloat16"),
                                 storage="bf16", tolerance=2e-2, T=140, seed=2, shards=2),
    # Strong decays: exp(A_log) ~ 20..60 so g reaches -50 per token and a chunk's sum -500 and more.
    "jet_strong_decay_f32": dict(config=jet_config(["jet"], 4, 4, 24, 2.0, 4, 8),
                                 storage="f32", tolerance=1e-4, T=140, seed=3, strong_decay=True),
    "qwen2_f32": dict(config=base_config("qwen2", num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
                                         tie_word_embeddings=False), storage="f32", tolerance=1e-4, T=140, seed=4),
    "qwen2_f16": dict(config=base_config("qwen2", num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         torch_dtype="float16"),
                      storage="f16", tolerance=2e-2, T=130, seed=5),
    # Qwen3: explicit head_dim 20 (heads * head_dim != hidden), one KV head (GQA 6), q/k norms, untied.
    "qwen3_f32": dict(config=base_config("qwen3", num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=1,
                                         head_dim=20, tie_word_embeddings=False, rope_theta=1e6),
                      storage="f32", tolerance=1e-4, T=140, seed=6),
}


def random_weights(cfg: ref.Config, gen: torch.Generator, strong_decay: bool) -> dict[str, torch.Tensor]:
    """Weights scaled so activations stay O(1) through the layers and every path matters."""
    D = cfg.hidden

    def normal(*shape, std=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * std

    def linear(out_dim, in_dim):
        return normal(out_dim, in_dim, std=1.0 / math.sqrt(in_dim))

    def norm_weight(n):
        return 1.0 + 0.2 * normal(n)

    w = {"model.embed_tokens.weight": normal(cfg.vocab, D), "model.norm.weight": norm_weight(D)}
    if not cfg.tie_embeddings:
        w["lm_head.weight"] = linear(cfg.vocab, D)
    for layer, kind in enumerate(cfg.layer_types):
        p = f"model.layers.{layer}"
        w[f"{p}.input_layernorm.weight"] = norm_weight(D)
        w[f"{p}.post_attention_layernorm.weight"] = norm_weight(D)
        w[f"{p}.mlp.gate_proj.weight"] = linear(cfg.intermediate, D)
        w[f"{p}.mlp.up_proj.weight"] = linear(cfg.intermediate, D)
        w[f"{p}.mlp.down_proj.weight"] = linear(D, cfg.intermediate)
        a = f"{p}.self_attn"
        if kind in ("attn", "swa"):
            hd, H, KV = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
            # q/k a bit larger than unit scale so the softmax is not nearly uniform.
            w[f"{a}.q_proj.weight"] = 2.0 * linear(H * hd, D)
            w[f"{a}.k_proj.weight"] = 2.0 * linear(KV * hd, D)
            w[f"{a}.v_proj.weight"] = linear(KV * hd, D)
            w[f"{a}.o_proj.weight"] = linear(D, H * hd)
            if cfg.attn_bias:
                for name, n in (("q_proj", H * hd), ("k_proj", KV * hd), ("v_proj", KV * hd)):
                    w[f"{a}.{name}.bias"] = 0.5 * normal(n)
            if cfg.qk_norm:
                w[f"{a}.q_norm.weight"] = 2.0 + 0.3 * normal(hd)
                w[f"{a}.k_norm.weight"] = 2.0 + 0.3 * normal(hd)
        else:
            H, dk, dv, K, r = (cfg.jet[k] for k in ("H", "dk", "dv", "K", "r"))
            value_dim = H * dv
            w[f"{a}.q_proj.weight"] = linear(H * dk, D)
            w[f"{a}.k_proj.weight"] = linear(H * dk, D)
            w[f"{a}.v_proj.weight"] = linear(value_dim, D)
            w[f"{a}.g_proj.weight"] = linear(value_dim, D)
            w[f"{a}.b_proj.weight"] = linear(H, D)
            w[f"{a}.a_proj.weight"] = linear(H, D)
            w[f"{a}.o_proj.weight"] = linear(D, value_dim)
            w[f"{a}.o_norm.weight"] = norm_weight(dv)
            if strong_decay:
                A = 20.0 + 40.0 * torch.rand(H, generator=gen, dtype=torch.float64)
                dt_bias = 1.0 + normal(H, std=0.5)
            else:
                A = 0.05 + 2.0 * torch.rand(H, generator=gen, dtype=torch.float64)
                dt_bias = normal(H, std=1.0)
            w[f"{a}.A_log"] = torch.log(A)
            w[f"{a}.dt_bias"] = dt_bias
            gen_hidden = value_dim // r
            kg = f"{a}.dynamic_conv1d.kernel_generator"
            w[f"{kg}.w1.weight"] = linear(gen_hidden, D)
            w[f"{kg}.w2.weight"] = linear(value_dim * K, gen_hidden)
            w[f"{kg}.w2.bias"] = 0.5 * normal(value_dim * K)
    return w


def save_model(out_dir: str, config: dict, weights: dict[str, torch.Tensor], shards: int) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    names = sorted(weights)
    if shards <= 1:
        save_file({n: weights[n].contiguous() for n in names}, os.path.join(out_dir, "model.safetensors"),
                  metadata={"format": "pt"})
        return
    weight_map, total = {}, 0
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: weights[n].contiguous() for n in names[s::shards]}
        save_file(part, os.path.join(out_dir, file), metadata={"format": "pt"})
        for n, t in part.items():
            weight_map[n] = file
            total += t.numel() * t.element_size()
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")


def greedy(cfg, w, prompt: list[int], steps: int) -> list[int] | None:
    """Greedy continuation, or None if some step's top-2 margin is too small to be robust."""
    seq, out = list(prompt), []
    for _ in range(steps):
        logits, _ = ref.forward(cfg, w, seq)
        top2 = torch.topk(logits[-1], 2)
        if float(top2.values[0] - top2.values[1]) < 1e-3 * float(logits[-1].abs().max()):
            return None
        seq.append(int(top2.indices[0]))
        out.append(seq[-1])
    return out


def make_case(name: str, spec: dict, root: str) -> None:
    out_dir = os.path.join(root, name)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    gen = torch.Generator().manual_seed(spec["seed"])
    config = spec["config"]
    tmp_cfg_dir = out_dir
    os.makedirs(tmp_cfg_dir, exist_ok=True)
    with open(os.path.join(tmp_cfg_dir, "config.json"), "w") as f:
        json.dump(config, f)
    cfg = ref.load_config(tmp_cfg_dir)
    stored = {n: t.to(STORAGE[spec["storage"]]) for n, t in random_weights(cfg, gen, spec.get("strong_decay", False)).items()}
    save_model(out_dir, config, stored, spec.get("shards", 1))
    w = ref.load_weights(out_dir)  # the reference computes from the weights exactly as stored
    ids = torch.randint(0, cfg.vocab, (spec["T"],), generator=gen).tolist()
    logits, hidden = ref.forward(cfg, w, ids)
    golden = {"ids": torch.tensor(ids, dtype=torch.int32), "logits": logits.to(torch.float32)}
    for layer, h in enumerate(hidden):
        golden[f"hidden.{layer}"] = h.to(torch.float32)
    if spec["storage"] == "f32":
        prompt = ids[:16]
        tokens = greedy(cfg, w, prompt, 24)
        if tokens is not None:
            golden["greedy.prompt"] = torch.tensor(prompt, dtype=torch.int32)
            golden["greedy.tokens"] = torch.tensor(tokens, dtype=torch.int32)
        else:
            print(f"  {name}: greedy continuation has a near-tie; not stored")
    if spec.get("strong_decay"):
        p = "model.layers.0.self_attn"
        normed = ref.rmsnorm(w["model.embed_tokens.weight"][torch.tensor(ids)], w["model.layers.0.input_layernorm.weight"], cfg.rms_eps)
        g = -torch.exp(w[f"{p}.A_log"]) * ref.softplus(normed @ w[f"{p}.a_proj.weight"].T + w[f"{p}.dt_bias"])
        print(f"  {name}: layer 0 decay g min {float(g.min()):.1f}, 64-token sum min {float(g[:64].sum(0).min()):.1f}")
    save_file({k: v.contiguous() for k, v in golden.items()}, os.path.join(out_dir, "golden.safetensors"),
              metadata={"tolerance": repr(spec["tolerance"]), "generator": "tests/reference/make_goldens.py"})
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print(f"{name}: T={len(ids)} layers={cfg.layer_types} storage={spec['storage']} "
          f"|logits|max={float(logits.abs().max()):.2f} size={size / 1e6:.2f} MB")


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(here, "..", "golden", "data"))
    ap.add_argument("--only", help="write only this case")
    args = ap.parse_args()
    torch.set_num_threads(2)
    for name, spec in CASES.items():
        if args.only is None or args.only == name:
            make_case(name, spec, args.out)


if __name__ == "__main__":
    main()
