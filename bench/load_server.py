#!/usr/bin/env python3
"""Bounded load test of `jetlm serve`: N concurrent streaming clients send completions until a
total request count or a time limit is reached; prints requests/s, generated tokens/s and latency.

Against a running server:
    python3 bench/load_server.py --url http://127.0.0.1:8080 --model-name NAME --clients 16 --requests 128
Or let it start one on a free loopback port (a tiny random model unless --model is given):
    python3 bench/load_server.py --jetlm build/jetlm [--model DIR] --clients 16 --requests 128 --max-batch 16

Traffic goes only to the given URL (loopback by default); every loop is bounded by --requests and
--duration. Exits 77 (skipped) when it must make a model but ../shared has no tokenizer.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse


def make_tiny_model(jetlm, shared, out):
    ea = {"jet": {"conv_size": 4, "dconv_generator_reduction": 8, "expand_v": 2, "head_dim": 16, "mode": "chunk",
                  "norm_eps": "1e-5", "num_heads": 4}, "swa": {"window_size": 16}}
    sets = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
            "num_key_value_heads": 2, "layer_types": ["jet", "attn", "swa", "jet"], "tie_word_embeddings": False,
            "max_position_embeddings": 2048, "efficient_attention_config": ea}
    cmd = [jetlm, "random-model", "--config", "jet-nemotron-2b", "--out", out, "--tokenizer-from",
           os.path.join(shared, "hf", "jet-nemotron")]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={json.dumps(v)}"]
    subprocess.run(cmd, check=True, capture_output=True)


def one_request(host, port, model, prompt, max_tokens, api_key):
    """Streams one completion; returns (ok, completion_tokens, latency_s, ttft_s)."""
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.7,
                       "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True})
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = "Bearer " + api_key
    t0 = time.time()
    ttft = None
    tokens = 0
    conn = http.client.HTTPConnection(host, port, timeout=300)
    try:
        conn.request("POST", "/v1/completions", body=body, headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            resp.read()
            return False, 0, time.time() - t0, None
        buffer = b""
        done = False
        while not done:
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(1)
            if not chunk:
                break
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                data = event.decode()[len("data: "):]
                if data == "[DONE]":
                    done = True
                    break
                j = json.loads(data)
                if j.get("choices") and j["choices"][0].get("text") and ttft is None:
                    ttft = time.time() - t0
                if j.get("usage"):
                    tokens = j["usage"]["completion_tokens"]
        return done, tokens, time.time() - t0, ttft
    except OSError:
        return False, 0, time.time() - t0, None
    finally:
        conn.close()


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running server (default: start one)")
    p.add_argument("--model-name", help="model id for --url (default: ask /v1/models)")
    p.add_argument("--api-key", default="")
    p.add_argument("--jetlm", help="the jetlm binary, to start a server")
    p.add_argument("--model", help="model dir for the started server (default: a tiny random model)")
    p.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="--threads of the started server")
    p.add_argument("--weights", default="as-stored")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=64, help="total requests (bound)")
    p.add_argument("--duration", type=float, default=60, help="stop sending after this many seconds (bound)")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--prompt-words", type=int, default=32)
    args = p.parse_args()

    server = None
    tmp = None
    try:
        if args.url:
            u = urllib.parse.urlparse(args.url)
            host, port = u.hostname, u.port or 80
        else:
            if not args.jetlm:
                p.error("give --url or --jetlm")
            model = args.model
            if not model:
                if not os.path.exists(os.path.join(args.shared, "hf", "jet-nemotron", "tokenizer.json")):
                    print("SKIP: no shared tokenizer to build a tiny model (give --model)")
                    return 77
                tmp = tempfile.mkdtemp(prefix="jetlm_load_")
                model = os.path.join(tmp, "tiny")
                make_tiny_model(args.jetlm, args.shared, model)
            cmd = [args.jetlm, "serve", "--model", model, "--port", "0", "--max-batch", str(args.max_batch),
                   "--max-queue", str(max(64, args.clients)), "--weights", args.weights]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            if args.api_key:
                cmd += ["--api-key", args.api_key]
            server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            line = server.stdout.readline()
            m = re.search(r"http://([\d.]+):(\d+)", line)
            if not m:
                print("server did not start:", line)
                return 1
            host, port = m.group(1), int(m.group(2))
            print(line.strip())
        model_name = args.model_name
        if not model_name:
            conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.request("GET", "/v1/models", headers={"Authorization": "Bearer " + args.api_key} if args.api_key else {})
            model_name = json.loads(conn.getresponse().read())["data"][0]["id"]
            conn.close()

        words = "the of and to in is was for on that with as by at from his her it an be this are".split()
        lock = threading.Lock()
        issued = [0]
        results = []
        deadline = time.time() + args.duration

        def client(index):
            while True:
                with lock:
                    if issued[0] >= args.requests or time.time() > deadline:
                        return
                    n = issued[0]
                    issued[0] += 1
                prompt = " ".join(words[(n * 7 + i) % len(words)] for i in range(args.prompt_words))
                r = one_request(host, port, model_name, prompt, args.max_tokens, args.api_key)
                with lock:
                    results.append(r)

        t0 = time.time()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - t0
        ok = [r for r in results if r[0]]
        failed = len(results) - len(ok)
        tokens = sum(r[1] for r in ok)
        latencies = [r[2] for r in ok]
        ttfts = [r[3] for r in ok if r[3] is not None]
        print(f"clients {args.clients}, requests {len(results)} ({failed} failed), max_tokens {args.max_tokens}, "
              f"prompt ~{args.prompt_words} words, {elapsed:.2f} s")
        print(f"requests/s {len(ok) / elapsed:.2f} | generated tokens/s {tokens / elapsed:.1f} | "
              f"latency p50 {percentile(latencies, 0.5):.3f} s p95 {percentile(latencies, 0.95):.3f} s | "
              f"ttft p50 {percentile(ttfts, 0.5):.3f} s")
        return 0 if failed == 0 and ok else 1
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
