#!/usr/bin/env python3
"""Encode throughput of jetlm's tokenizer next to HF `tokenizers`, one core each, same text.

    python3 bench/bench_tokenizer.py [--model ../shared/hf/jet-nemotron] [--jetlm build/jetlm]
                                     [--file TEXT] [--mb 4] [--repeat 5] [--no-special]

Without --file, a deterministic mixed text of about --mb MB is generated (English prose, code,
multilingual lines, emoji, chat markup, digit runs; see make_text). Both sides encode the whole text
as ONE string, --repeat times: jetlm through `jetlm tokenize --file F --bench` (timed inside the
process, tokenizer loading excluded), HF through `Tokenizer.encode(text, add_special_tokens=False)`
with TOKENIZERS_PARALLELISM=false and RAYON_NUM_THREADS=1 (encode of a single string is
single-threaded in HF anyway). "cold" is the first run (empty word caches on both sides), "warm"
the best of the others. The script also checks that both produce the same ids. HF is slower on one
huge string than on many short ones (offset bookkeeping), so a second HF figure encodes the text line
by line with `encode` per line (timing only: ids can differ where lines meet).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

from tokenizers import Tokenizer  # noqa: E402  (after the environment is set)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import make_tokenizer_goldens as corpus  # noqa: E402


def make_text(megabytes, seed=1):
    rng = random.Random(seed)
    parts, size = [], 0
    pools = [corpus.PROSE, corpus.CODE, corpus.MULTILINGUAL, corpus.EMOJI, corpus.CHAT, corpus.NUMBERS]
    while size < megabytes * 1e6:
        r = rng.random()
        if r < 0.45:
            piece = corpus.random_prose(rng) + "\n"
        elif r < 0.55:
            piece = corpus.random_mix(rng) + "\n"
        else:
            piece = rng.choice(rng.choice(pools)) + "\n"
        parts.append(piece)
        size += len(piece.encode())
    return "".join(parts)


def bench_hf(tok, text, repeat, match_added):
    if not match_added:
        raise SystemExit("--no-special: build the HF side with an empty added-token list (not done here)")
    times, ids = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        ids = tok.encode(text, add_special_tokens=False).ids
        times.append(time.perf_counter() - start)
    return ids, times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=os.path.join(ROOT, "..", "shared", "hf", "jet-nemotron"))
    parser.add_argument("--jetlm", default=os.path.join(ROOT, "build", "jetlm"))
    parser.add_argument("--file", help="text file to encode (default: a generated mixed text)")
    parser.add_argument("--mb", type=float, default=4.0, help="size of the generated text")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    if args.file:
        with open(args.file, "rb") as f:
            raw = f.read()
        path = args.file
    else:
        raw = make_text(args.mb).encode()
        handle = tempfile.NamedTemporaryFile(prefix="jetlm_bench_tok_", suffix=".txt", delete=False)
        handle.write(raw)
        handle.close()
        path = handle.name
    text = raw.decode("utf-8", "replace")

    hf = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    hf_ids, hf_times = bench_hf(hf, text, args.repeat, True)

    lines = text.splitlines(keepends=True)
    line_times = []
    for _ in range(max(2, args.repeat // 2)):
        start = time.perf_counter()
        for line in lines:
            hf.encode(line, add_special_tokens=False)
        line_times.append(time.perf_counter() - start)

    out = subprocess.run([args.jetlm, "tokenize", "--model", args.model, "--file", path, "--bench",
                          "--repeat", str(args.repeat)], check=True, capture_output=True, text=True)
    jet = json.loads(out.stdout)
    ids_out = subprocess.run([args.jetlm, "tokenize", "--model", args.model, "--file", path],
                             check=True, capture_output=True, text=True).stdout.strip()
    jet_ids = [int(x) for x in ids_out.split(",")] if ids_out else []
    if not args.file:
        os.unlink(path)

    mb = len(raw) / 1e6
    hf_cold, hf_warm = hf_times[0], min(hf_times[1:] or hf_times)
    print(f"text: {len(raw)} bytes, {len(hf_ids)} tokens (HF), ids identical: {jet_ids == hf_ids}")
    print(f"{'':10} {'cold MB/s':>10} {'warm MB/s':>10} {'warm tokens/s':>14}")
    print(f"{'jetlm':10} {jet['cold_mb_per_s']:10.2f} {jet['best_mb_per_s']:10.2f} {jet['best_tokens_per_s']:14.0f}")
    print(f"{'HF':10} {mb / hf_cold:10.2f} {mb / hf_warm:10.2f} {len(hf_ids) / hf_warm:14.0f}")
    print(f"{'HF lines':10} {mb / line_times[0]:10.2f} {mb / min(line_times[1:]):10.2f} "
          f"{len(hf_ids) / min(line_times[1:]):14.0f}   ({len(lines)} encode calls)")
    print(f"speed-up (warm): {jet['best_mb_per_s'] / (mb / hf_warm):.2f}x vs HF whole text, "
          f"{jet['best_mb_per_s'] / (mb / min(line_times[1:])):.2f}x vs HF per line "
          f"(tokenizers {__import__('tokenizers').__version__}, 1 thread each)")
    if jet_ids != hf_ids:
        sys.exit(1)


if __name__ == "__main__":
    main()
