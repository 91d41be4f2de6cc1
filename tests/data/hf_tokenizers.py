#!/usr/bin/env python3
"""The HF `tokenizers` side of tests/data (exit 77 = skip when the package is missing).

  hf_tokenizers.py encode TOKENIZER_JSON IN.json OUT.json
      IN: a list of strings; OUT: {"ids": [[...], ...], "decoded": [...]} from Tokenizer.from_file
  hf_tokenizers.py train CORPUS.json VOCAB_SIZE MIN_FREQUENCY OUT.json
      CORPUS: a list of documents; trains HF's BpeTrainer with the Qwen2 pre-tokenizer (NFC, Split regex,
      ByteLevel without regex, the 256-byte initial alphabet) and writes {"merges": [[a, b], ...]}.
"""
import json
import sys

try:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
except ImportError:
    sys.exit(77)

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")


def main():
    mode = sys.argv[1]
    if mode == "encode":
        tok = Tokenizer.from_file(sys.argv[2])
        texts = json.load(open(sys.argv[3], encoding="utf-8"))
        ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
        decoded = [tok.decode(i, skip_special_tokens=False) for i in ids]
        json.dump({"ids": ids, "decoded": decoded}, open(sys.argv[4], "w", encoding="utf-8"), ensure_ascii=False)
    elif mode == "train":
        docs = json.load(open(sys.argv[2], encoding="utf-8"))
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=int(sys.argv[3]), min_frequency=int(sys.argv[4]), show_progress=False,
                                      special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(docs, trainer)
        merges = json.loads(tok.to_str())["model"]["merges"]
        merges = [m.split(" ") if isinstance(m, str) else m for m in merges]
        json.dump({"merges": merges}, open(sys.argv[5], "w", encoding="utf-8"), ensure_ascii=False)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
