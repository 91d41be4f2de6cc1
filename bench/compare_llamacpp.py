"""jetlm vs llama.cpp on the same random-weight checkpoint, same threads, same precision.

Writes a random-weight Qwen2.5-1.5B (bf16) with `jetlm random-model` (tokenizer files from a model
dir, default ../shared/hf/jet-nemotron: the Qwen2 tokenizer), converts it to GGUF bf16 and Q8_0
with llama.cpp's converter, then times prefill of --prompt tokens and --gen decode steps:
  jetlm:     `jetlm bench --model DIR [--weights q8] -p P -n G --json`
  llama.cpp: llama-cpp-python (pip install llama-cpp-python gguf; builds llama.cpp from source),
             Llama.eval() of the prompt, then one token at a time.
Variants alternate and repeat (--repeat) because the machine's bandwidth drifts; the table gives
medians.

    python3 bench/compare_llamacpp.py --converter /path/to/llama.cpp/convert_hf_to_gguf.py \
        [--threads 2] [--prompt 512] [--gen 64] [--repeat 3] [--work /tmp/jetlm-vs-llamacpp]
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(cmd, **kw):
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, check=True, **kw)


def jetlm_bench(jetlm, model_dir, weights, threads, prompt, gen):
    out = run([jetlm, "bench", "--model", model_dir, "--weights", weights, "--threads", str(threads),
               "-p", str(prompt), "-n", str(gen), "--json"], capture_output=True, text=True).stdout
    d = json.loads(out.strip().splitlines()[-1])
    return d["prefill_tok_s"], d["decode_tok_s"]


def llamacpp_bench(gguf, threads, prompt, gen):
    from llama_cpp import Llama
    llm = Llama(model_path=gguf, n_ctx=prompt + gen + 16, n_batch=min(prompt, 512), n_ubatch=min(prompt, 512),
                n_threads=threads, n_threads_batch=threads, verbose=False)
    rng = random.Random(42)
    ids = [rng.randrange(1000, 150000) for _ in range(prompt + gen)]
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids[:prompt])
    prefill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(gen):
        llm.eval([ids[prompt + i]])
    decode_s = time.perf_counter() - t0
    del llm
    return prompt / prefill_s, gen / decode_s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--converter", required=True, help="llama.cpp's convert_hf_to_gguf.py")
    ap.add_argument("--jetlm", default=os.path.join(ROOT, "build", "jetlm"))
    ap.add_argument("--tokenizer-from", default=os.path.join(ROOT, "..", "shared", "hf", "jet-nemotron"))
    ap.add_argument("--work", default="/tmp/jetlm-vs-llamacpp")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    model_dir = os.path.join(args.work, "qwen2.5-1.5b-random")
    if not os.path.exists(os.path.join(model_dir, "model.safetensors")):
        run([args.jetlm, "random-model", "--config", "qwen2.5-1.5b", "--out", model_dir, "--dtype", "bf16",
             "--tokenizer-from", args.tokenizer_from, "--set", 'architectures=["Qwen2ForCausalLM"]'])
    ggufs = {}
    for outtype in ("bf16", "q8_0"):
        path = os.path.join(args.work, f"qwen2.5-1.5b-random-{outtype}.gguf")
        if not os.path.exists(path):
            env = dict(os.environ)
            gguf_py = os.path.join(os.path.dirname(args.converter), "gguf-py")
            if os.path.isdir(gguf_py):
                env["PYTHONPATH"] = gguf_py + os.pathsep + env.get("PYTHONPATH", "")
            run([sys.executable, args.converter, model_dir, "--outtype", outtype, "--outfile", path], env=env)
        ggufs[outtype] = path

    variants = [("jetlm bf16", lambda: jetlm_bench(args.jetlm, model_dir, "as-stored", args.threads, args.prompt, args.gen)),
                ("llama.cpp bf16", lambda: llamacpp_bench(ggufs["bf16"], args.threads, args.prompt, args.gen)),
                ("jetlm q8", lambda: jetlm_bench(args.jetlm, model_dir, "q8", args.threads, args.prompt, args.gen)),
                ("llama.cpp Q8_0", lambda: llamacpp_bench(ggufs["q8_0"], args.threads, args.prompt, args.gen))]
    results = {name: [] for name, _ in variants}
    for rep in range(args.repeat):
        for name, fn in variants:  # alternate so drift hits every variant alike
            results[name].append(fn())
            print(f"rep {rep} {name}: prefill {results[name][-1][0]:.1f} tok/s, decode {results[name][-1][1]:.2f} tok/s",
                  file=sys.stderr)
    print(f"\nrandom-weight Qwen2.5-1.5B, {args.threads} threads, prompt {args.prompt}, {args.gen} decode steps, "
          f"medians of {args.repeat}")
    print(f"{'engine':<16} {'prefill tok/s':>14} {'decode tok/s':>13}")
    for name, runs in results.items():
        print(f"{name:<16} {statistics.median(r[0] for r in runs):>14.1f} {statistics.median(r[1] for r in runs):>13.2f}")


if __name__ == "__main__":
    main()
