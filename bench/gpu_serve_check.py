#!/usr/bin/env python3
"""Checks `jetlm serve --device cuda` end to end on a GPU machine (no openai package needed there):
concurrent greedy completions, streamed and not, must equal `jetlm generate` on the CPU for the
same prompts, and /metrics must show every slot free afterwards. Prints requests/s and tokens/s.

  python3 bench/gpu_serve_check.py --jetlm build-cuda/jetlm --model DIR [--clients 16]
"""
import argparse
import concurrent.futures
import json
import re
import subprocess
import sys
import time
import urllib.request

PROMPTS = ["The quick brown fox", "Once upon a time", "In 1905, Einstein", "def main():", "Hello, world",
           "The capital of France is", "1, 2, 3, 4,", "Jet-Nemotron decodes"]


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        raw = r.read().decode()
    if not body.get("stream"):
        out = json.loads(raw)
        return out["choices"][0]["text"], out["usage"]["completion_tokens"]
    text, n = "", 0
    for line in raw.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            chunk = json.loads(line[6:])
            if chunk.get("choices"):
                text += chunk["choices"][0].get("text", "")
                n += 1
    return text, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jetlm", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=24)
    a = ap.parse_args()
    proc = subprocess.Popen([a.jetlm, "serve", "--model", a.model, "--port", "0", "--device", "cuda",
                             "--max-batch", "8", "--ctx", "512"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r":(\d+) \(model '([^']*)'", line)
    if not m:
        print("server did not start:", line)
        proc.kill()
        return 1
    port, name = int(m.group(1)), m.group(2)
    print(line.strip(), flush=True)
    try:
        return check(a, port, name, proc)
    finally:
        proc.kill()


def check(a, port, name, proc):
    jobs = [(PROMPTS[i % len(PROMPTS)], i % 2 == 1) for i in range(a.clients)]
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(a.clients) as pool:
        results = list(pool.map(lambda j: post(port, {"model": name, "prompt": j[0], "max_tokens": a.max_tokens, "temperature": 0,
                                                      "stream": j[1]}), jobs))
    elapsed = time.time() - t0
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    proc.terminate()
    proc.wait(timeout=30)
    tokens = sum(n for _, n in results)
    print(f"{len(jobs)} requests in {elapsed:.2f} s: {len(jobs) / elapsed:.1f} req/s, {tokens / elapsed:.1f} tok/s")
    failures = 0
    expected = {}
    for p in PROMPTS:
        out = subprocess.run([a.jetlm, "generate", "--model", a.model, "-p", p, "-n", str(a.max_tokens), "--temp", "0",
                              "--device", "cpu"], capture_output=True, check=True)
        expected[p] = out.stdout.decode()  # bytes as printed: no newline translation
    for (p, stream), (text, _) in zip(jobs, results):
        if text != expected[p]:
            failures += 1
            print(f"MISMATCH ({'stream' if stream else 'plain'}) {p!r}: server {text!r} vs generate {expected[p]!r}")
    active = [l for l in metrics.splitlines() if l.startswith("jetlm_slots_active") or l.startswith("jetlm_active")]
    print("metrics:", active)
    if "jetlm_slots_active 0" not in active:
        failures += 1
        print("slots still held after every request finished")
    print("all equal to CPU generate" if failures == 0 else f"{failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
