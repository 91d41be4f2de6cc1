#!/usr/bin/env python3
"""Reference token ids for the tokenizer tests, from Hugging Face `tokenizers`.

Builds a deterministic corpus of >2,000 strings (prose, code, whitespace runs, CRLF, long digit runs,
upper-case contractions, CJK / Arabic / Hindi / Thai, emoji ZWJ sequences and skin tones, text that
NFC changes, chat markup with special tokens, added tokens glued to text, invalid UTF-8, a ~20 KB
document) and writes, for each string, HF's ids with the official added tokens and with an empty
added-token list, plus HF's decode of the ids. It also writes random id sequences with HF's decode
(skip_special_tokens false and true).

    python3 tests/reference/make_tokenizer_goldens.py [--tokenizer ../shared/hf/jet-nemotron/tokenizer.json]

Outputs, in tests/tokenizer/data/:
flags/tokenizer.json + flags_goldens.jsonl: a small tokenizer (the official vocab cut to its first
merges) whose added tokens use every flag (lstrip, rstrip, single_word, normalized, special,
content already in the vocab, ids HF re-assigns), with HF's ids for strings that exercise them.
tokenizer_goldens.jsonl, one JSON object per line:
  {"text": S} or {"hex": H}    the input (hex of the raw bytes when it is not valid UTF-8; HF gets
                               bytes.decode("utf-8", "replace"), which is what jetlm does with it)
  "ids": [...]                 HF encode(add_special_tokens=False)
  "plain": [...]               the same with no added tokens (omitted when equal to "ids")
  "dec": S                     HF decode(ids, skip_special_tokens=False) (omitted when equal to the text)
  {"decode": [...], "keep": S, "skip": S}   random ids and HF's decode without/with skipping specials
"""
import argparse
import json
import os
import random
import unicodedata

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_TOKENIZER = os.path.join(ROOT, "..", "shared", "hf", "jet-nemotron", "tokenizer.json")
DATA = os.path.join(ROOT, "tests", "tokenizer", "data")
OUT = os.path.join(DATA, "tokenizer_goldens.jsonl")

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! How are you doing today?",
    "It's a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
    "Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse...",
    "In 1969, Apollo 11 landed on the Moon; Neil Armstrong said: \"That's one small step for [a] man.\"",
    "Don't panic! We'll figure it out, won't we? They've said they'd come, and I'm sure they're right.",
    "e-mail: john.doe@example.com, web: https://www.example.org/path?query=1&x=y#frag",
    "Prices rose 3.5% in Q4 2023 (vs. 2.1% in Q3), according to the U.S. Bureau of Labor Statistics.",
    "Mr. O'Neil's dog—a 12-year-old beagle named \"Rex\"—won first prize at the county fair.",
    "The café served crème brûlée, jalapeño poppers and a naïve piña colada.",
    "Straße, Größe, Übermut; façade; smörgåsbord; œuvre; Ærø; łódź.",
    "What?! No way... Really??? Yes!!! ¿Qué? ¡Sí!",
    "Tabs\tseparate\tthese\twords, and  two  spaces   three   spaces.",
    "A sentence with trailing spaces.   ",
    "   A sentence with leading spaces.",
]

CODE = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "#include <stdio.h>\n\nint main(void) {\n\tprintf(\"Hello, %s!\\n\", \"world\");\n\treturn 0;\n}\n",
    "for (let i = 0; i < arr.length; i++) {\n  console.log(`item ${i}: ${arr[i]}`);\n}",
    "{\"name\": \"jetlm\", \"version\": \"0.1.0\", \"deps\": [\"pcre2\", \"utf8proc\"], \"ok\": true, \"n\": null}",
    "<html>\n  <body>\n    <p class=\"x\">Hi &amp; bye</p>\n  </body>\n</html>",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
    "$ ls -la | grep '^d' | awk '{print $9}' > dirs.txt && echo done",
    "template <typename T>\nconstexpr T clamp(T v, T lo, T hi) noexcept { return v < lo ? lo : hi < v ? hi : v; }",
    "    \t  mixed indentation\n\t\t\tthree tabs\n        eight spaces\n",
    "x=1;y=2;z=x+y*3/4-5%6**7//8;a[0]+=b[-1]<<2>>1&0xff|~0^1",
    "if __name__ == '__main__':\r\n    main()\r\n",
    "// comment with unicode: π ≈ 3.14159, ∑ᵢ xᵢ², √2, ∞, ≠, ≤, ≥\n",
    "fn main() -> Result<(), Box<dyn Error>> {\n    let v: Vec<u8> = vec![1, 2, 3];\n    Ok(())\n}",
    "@media (max-width: 600px) { .a > .b:hover::after { content: '\\201C'; } }",
    "    return {k: v for k, v in sorted(d.items(), key=lambda kv: -kv[1])}\n\n\n",
]

MULTILINGUAL = [
    "我们今天去公园散步，天气非常好。", "機械学習は人工知能の一分野です。", "ひらがなとカタカナ、そして漢字。",
    "안녕하세요, 만나서 반갑습니다!", "مرحبا بالعالم، كيف حالك اليوم؟", "السلام عليكم ورحمة الله وبركاته",
    "नमस्ते दुनिया, आप कैसे हैं?", "हिन्दी भाषा में अनुस्वार और विसर्ग", "สวัสดีครับ ยินดีที่ได้รู้จัก",
    "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ", "Привет, мир! Как дела?", "Γειά σου Κόσμε· τι κάνεις;",
    "שלום עולם, מה שלומך?", "Xin chào thế giới, bạn có khỏe không?", "İstanbul'da ığdır şehri",
    "ሰላም ለዓለም", "Բարեւ աշխարհ", "გამარჯობა მსოფლიო", "Здравствуйте! Ёлка, ёж, щука.",
    "中文English混合123テスト", "東京タワー（とうきょうタワー）は、東京都港区芝公園にある。",
    "ਪੰਜਾਬੀ ਭਾਸ਼ਾ", "தமிழ் மொழி", "বাংলা ভাষা", "ગુજરાતી", "ಕನ್ನಡ", "മലയാളം", "తెలుగు",
    "ພາສາລາວ", "ភាសាខ្មែរ", "မြန်မာဘာသာ", "བོད་སྐད་", "ᠮᠣᠩᠭᠣᠯ", "Ελληνικά: ἀρχὴ ἥμισυ παντός",
]

EMOJI = [
    "👍", "👍🏽", "👋🏻👋🏼👋🏽👋🏾👋🏿", "👨‍👩‍👧‍👦", "👩🏽‍💻", "🏳️‍🌈", "🏴‍☠️", "🇺🇸🇯🇵🇩🇪", "1️⃣2️⃣#️⃣",
    "❤️‍🔥", "🧑🏿‍🤝‍🧑🏻", "I ❤️ NY 🗽!", "😀😃😄😁😆😅🤣😂", "🎉🎊 party time 🥳", "☕️ and 🍰 at 3pm",
    "🐈‍⬛ is a black cat", "text👍text", "🫠🫡🫥", "👁️‍🗨️", "©️®️™️",
]

NFC_CASES = [
    "e\u0301", "cafe\u0301", "A\u030a", "\u212b", "\u2126", "\u1100\u1161\u11a8", "\u1112\u1161\u11ab\u1100\u1173\u11af",
    "a\u0302\u0323", "a\u0323\u0302", "o\u0308\u0304", "\u0041\u0300\u0301", "n\u0303o", "u\u0308ber", "\u00e9 vs e\u0301",
    "\uff21\uff22\uff23", "\ufb01le", "x\u0307\u0323", "\u0928\u093c", "\u09c7\u09be", "\u0b47\u0b3e",
    "\u1e9b\u0323", "Ǆ ǅ ǆ", "\u0344", "\u0958\u0959", "ｶﾞｷﾞ", "\u3099\u304b\u3099",
]

CONTRACTIONS = [
    "'S 'LL 'RE 'VE 'M 'D 'T", "IT'S I'M WE'LL THEY'RE YOU'VE HE'D DON'T", "it's i'm we'll they're you've he'd don't",
    "It'S We'Ll They'rE", "'s'll're've'm'd't", "rock 'n' roll", "the 90's", "O'Reilly's", "ſ 'ſ 'ſt",
    "''s ''ll", "'x 'sl 'lll", "’s ’ll (curly)", "I'M'S'LL", "'\n's", "'S\r\n'LL",
]

NUMBERS = [
    "1234567890", "12345678901234567890123456789012345678901234567890", "3.14159265358979323846",
    "1,000,000.00", "-42", "+1 (555) 123-4567", "2024-01-31T23:59:59Z", "0xDEADBEEF 0b1010 0o777",
    "1e-10 6.022e23", "v1.2.3-rc.4", "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "１２３", "Ⅻ ⅻ ½ ¾ ²³",
    "a1b2c3", "99 bottles", "123abc456", "00000000000000000007",
]

CHAT = [
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n2+2 = 4.<|im_end|>",
    "<|endoftext|>", "text<|endoftext|>more", "<|im_start|><|im_end|>", "<|im_start|>\n<|im_end|>\n",
    "abc<|im_end|>def", "<|im_end|>abc", "abc<|im_start|>", "<|im_start|>assistant<|im_end|><|endoftext|>",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
    "x<tool_call>y</tool_call>z", "<|fim_prefix|>def f(x):\n    <|fim_suffix|>\n    return y<|fim_middle|>",
    "<|repo_name|>jetlm<|file_sep|>src/main.cpp\nint main() {}", "<|vision_start|><|image_pad|><|vision_end|>",
    "<|im_start", "<|im_start|", "im_start|>", "<|IM_START|>", "< |im_start|>", "<<|im_start|>>",
    "<|im_start|><|im_start|><|im_start|>", "  <|im_start|>  ", "\n<|im_end|>\n", "<|box_start|>(1,2),(3,4)<|box_end|>",
    "<|object_ref_start|>the cat<|object_ref_end|>", "<|quad_start|>q<|quad_end|>", "<|vision_pad|><|video_pad|>",
    "<|fim_pad|><|fim_pad|>", "日本語<|im_end|>中文", "👍<|endoftext|>👍", "e\u0301<|im_end|>e\u0301",
]

INVALID_UTF8 = [
    b"abc\xff", b"\xc3", b"\xe2\x82", b"\xe2\x82\xac\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
    b"\xc0\xaf", b"\x80\x80\x80", b"a\xf0\x9f\x98b", b"\xf0\x9f\x98\x80\xf0\x9f", b"caf\xe9 cr\xe8me",
    b"<|im_start|>\xffuser<|im_end|>", b"\xef\xbb\xbfBOM text", b"\xfe\xff\x00h\x00i", b"x\xc2\x80y\xdf\xbf",
    b"\xe0\x80\x80", b"\xe0\xa0", b"\xf8\x88\x80\x80\x80", b"\xc1\xbf", b"ok\n\xed\xbf\xbf\nok",
]

WORDS = ("the of and to in is was for on that with as by at from his her they this which be or are "
         "an not have has had one all were we there their what so if about who would will can more "
         "time people year way day man thing woman life child world school state family student group "
         "country problem hand part place case week company system program question work government "
         "Apple Google NASA OpenAI JSON HTTP URL API GPU CPU LLM BPE UTF-8 naïve résumé coöperate").split()

POOLS = [
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n\r", "    ",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "àáâãäåæçèéêëìíîïñòóôõöøùúûüýþÿ", "αβγδεζηθικλμνξοπρστυφχψω",
    "абвгдежзийклмнопрстуфхцчшщъыьэюя", "的一是不了人我在有他这为之大来以个中上们", "あいうえおかきくけこアイウエオ",
    "가나다라마바사아자차카타파하", "ابتثجحخدذرزسشصضطظعغفقكلمنهوي", "अआइईउऊएऐओऔकखगघ", "กขคงจฉชซญดตถทนบป",
    "\u0300\u0301\u0302\u0303\u0308\u0323\u0327", "\u00a0\u2000\u2003\u2009\u200a\u202f\u205f\u3000\u1680\u0085",
    "\u200b\u200c\u200d\u2060\ufeff", "😀👍🏽🎉❤️🇺🇸👨‍👩‍👧", "\x00\x01\x07\x1b\x7f", "’“”–—…•€£¥©®™°±×÷",
    "'sSlLtTrReEvVmMdD", "\u2028\u2029\x0b\x0c", "ſﬁﬂ", "\ue000\uf8ff", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟘𝟙𝟚",
]

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
            "<|fim_middle|>", "<|fim_suffix|>", "<|file_sep|>", "<|vision_pad|>"]


def whitespace_cases(rng):
    cases = []
    for n in [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 200, 257, 1000]:
        cases += [" " * n, "a" + " " * n + "b", " " * n + "x", "x" + " " * n, "\t" * (n % 40 + 1),
                  "\n" * (n % 30 + 1), "x" + "\r\n" * (n % 20 + 1) + "y"]
    cases += ["\r\n", "\r", "\n\r", "line1\r\nline2\r\n", "a\r\rb", " \n \n ", "\t \t \n", "  \n\n  \n", "x \ny",
              "a\u00a0b", "a\u3000b", "a \u00a0 b", "\u2028", "a\u0085b", "\x0b\x0c", " " * 50 + "\n" + " " * 50]
    for _ in range(120):
        cases.append("".join(rng.choice([" ", "\t", "\n", "\r\n", "\r", "  ", "\u00a0", "x", "."])
                             for _ in range(rng.randint(1, 30))))
    return cases


def random_prose(rng):
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 30))]
    text = ""
    for w in words:
        if rng.random() < 0.1:
            w = w.upper()
        elif rng.random() < 0.15:
            w = w.capitalize()
        text += w + rng.choice([" ", " ", " ", ", ", ". ", "  ", "\n", "'s ", "'LL ", "-", "; ", "? "])
    return text.strip() if rng.random() < 0.5 else text


def random_mix(rng):
    out = []
    for _ in range(rng.randint(1, 12)):
        pool = rng.choice(POOLS)
        out.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 8))))
        if rng.random() < 0.1:
            out.append(rng.choice(SPECIALS))
    return "".join(out)


def long_document(rng):
    parts = []
    while sum(len(p.encode()) for p in parts) < 20000:
        kind = rng.random()
        if kind < 0.4:
            parts.append(" ".join(random_prose(rng) for _ in range(3)) + "\n\n")
        elif kind < 0.6:
            parts.append(rng.choice(CODE) + "\n")
        elif kind < 0.8:
            parts.append(rng.choice(MULTILINGUAL) + rng.choice(EMOJI) + "\n")
        else:
            parts.append(random_mix(rng) + "\r\n")
    return "".join(parts)


def corpus():
    rng = random.Random(20240531)
    texts = []
    texts += PROSE + CODE + MULTILINGUAL + EMOJI + NFC_CASES + CONTRACTIONS + NUMBERS + CHAT
    texts += whitespace_cases(rng)
    # Added tokens glued to text on either side, and every piece kind next to them.
    for special in SPECIALS:
        for neighbour in ["abc", " ", "\n", "日本", "👍", "'s", "123", "e\u0301", "  x  "]:
            texts += [neighbour + special, special + neighbour, neighbour + special + neighbour]
    for _ in range(300):
        texts.append(" ".join(rng.choice(PROSE + MULTILINGUAL + EMOJI).split()[: rng.randint(1, 6)]))
    for _ in range(500):
        texts.append(random_prose(rng))
    for _ in range(700):
        texts.append(random_mix(rng))
    for _ in range(100):  # digit runs of every length, alone and glued to letters
        texts.append("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 80))) + rng.choice(["", "px", " km", "th"]))
    for _ in range(60):  # chat turns
        turns = []
        for role in ["system", "user", "assistant"][: rng.randint(1, 3)]:
            turns.append(f"<|im_start|>{role}\n{random_prose(rng)}<|im_end|>\n")
        texts.append("".join(turns))
    texts.append(long_document(rng))
    texts.append(long_document(rng).replace("\n", "\r\n"))
    seen, unique = set(), []
    for t in texts:
        if t not in seen:
            seen.add(t)
            unique.append(t)
    return unique


def random_id_sequences(tok, rng, count):
    vocab = tok.get_vocab(with_added_tokens=False)
    n_vocab = len(vocab)
    added = sorted(set(tok.get_vocab(with_added_tokens=True).values()) - set(vocab.values()))
    byte_level = sorted(i for t, i in vocab.items() if len(t) == 1)  # sorted: get_vocab's order varies
    # Tokens whose bytes are not valid UTF-8 on their own (pieces of multi-byte characters).
    partial = sorted(i for t, i in vocab.items() if "\ufffd" in tok.decode([i], skip_special_tokens=False))
    seqs = []
    for _ in range(count):
        seq = []
        for _ in range(rng.randint(1, 40)):
            r = rng.random()
            if r < 0.4:
                seq.append(rng.randrange(n_vocab))
            elif r < 0.6:
                seq.append(rng.choice(byte_level))
            elif r < 0.85:
                seq.append(rng.choice(partial))
            else:
                seq.append(rng.choice(added))
        seqs.append(seq)
    return seqs


FLAG_TOKENS = [
    {"id": 900, "content": "<|l|>", "lstrip": True, "rstrip": False, "single_word": False, "normalized": False, "special": True},
    {"id": 901, "content": "<|r|>", "lstrip": False, "rstrip": True, "single_word": False, "normalized": False, "special": True},
    {"id": 902, "content": "<|lr|>", "lstrip": True, "rstrip": True, "single_word": False, "normalized": False, "special": False},
    {"id": 903, "content": "qxz", "lstrip": False, "rstrip": False, "single_word": True, "normalized": False, "special": False},
    {"id": 904, "content": "cafe\u0301", "lstrip": False, "rstrip": False, "single_word": False, "normalized": True, "special": False},
    {"id": 905, "content": "e\u0301x", "lstrip": False, "rstrip": False, "single_word": False, "normalized": False, "special": False},
    {"id": 906, "content": "the", "lstrip": False, "rstrip": False, "single_word": False, "normalized": False, "special": False},
    {"id": 5000, "content": "<|gap|>", "lstrip": False, "rstrip": False, "single_word": False, "normalized": False, "special": True},
    {"id": 907, "content": "<|l|>x", "lstrip": False, "rstrip": False, "single_word": False, "normalized": False, "special": False},
    {"id": 908, "content": "Ġspace", "lstrip": False, "rstrip": False, "single_word": False, "normalized": False, "special": False},
    {"id": 909, "content": "a b", "lstrip": False, "rstrip": False, "single_word": True, "normalized": True, "special": False},
]

FLAG_TEXTS = [
    "a  <|l|>b", "a<|l|>b", "  <|l|>", "\t\n <|l|> x", "a <|r|>  b", "<|r|>\n\nb", "a <|lr|> b", "x  <|lr|>\t<|lr|>  y",
    "qxz", "a qxz b", "qxzs", "sqxz", "qxz_", "_qxz", "qxz.", "(qxz)", "qxzqxz", "qxz qxz", "éqxz", "1qxz",
    "日qxz", "qxz日", "café", "cafe\u0301", "the café!", "e\u0301x", "éx", "the theory", "other", "<|gap|>", "the<|gap|>the",
    "<|l|>x", "a <|l|>x", "a <|l|>y", " <|l|>x <|r|> ", "Ġspace", " space", "a b", "xa b", "a bx", "a b c", "<|r|>   <|l|>",
    "<|lr|><|lr|>", "\u3000<|l|>\u00a0", "qxz\u0301", "a\u0301qxz",
    "qxz\u00b2", "qxz\u2460", "\u24b6qxz", "qxz\u200d", "qxz\u203f", "qxz\u0663", "\u2167qxz", "x\u0301 qxz",
]


def make_flags_tokenizer(spec):
    """The official tokenizer cut to its first 2,000 merges, with FLAG_TOKENS as added tokens."""
    model = spec["model"]
    byte_chars = [t for t in model["vocab"] if len(t) == 1 and model["vocab"][t] < 256]
    vocab = {t: i for i, t in enumerate(sorted(byte_chars, key=lambda t: model["vocab"][t]))}
    merges = []
    for merge in model["merges"][:4000]:
        a, b = merge if isinstance(merge, list) else merge.split(" ")
        if a in vocab and b in vocab and a + b not in vocab and len(merges) < 2000:
            vocab[a + b] = len(vocab)
            merges.append(f"{a} {b}")  # the string form, so both merge forms are covered
    small = dict(spec)
    small["model"] = dict(model, vocab=vocab, merges=merges)
    small["added_tokens"] = FLAG_TOKENS
    return small


def write_flags_goldens(spec):
    small = make_flags_tokenizer(spec)
    os.makedirs(os.path.join(DATA, "flags"), exist_ok=True)
    with open(os.path.join(DATA, "flags", "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(small, f, ensure_ascii=False, separators=(",", ":"))
    tok = Tokenizer.from_str(json.dumps(small))
    with open(os.path.join(DATA, "flags_goldens.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        added = {t["content"]: tok.token_to_id(t["content"]) for t in FLAG_TOKENS}
        f.write(json.dumps({"added_ids": added, "vocab_size": tok.get_vocab_size(with_added_tokens=True)},
                           ensure_ascii=False) + "\n")
        for text in FLAG_TEXTS:
            ids = tok.encode(text, add_special_tokens=False).ids
            f.write(json.dumps({"text": text, "ids": ids, "keep": tok.decode(ids, skip_special_tokens=False),
                                "skip": tok.decode(ids, skip_special_tokens=True)}, ensure_ascii=False) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", default=DEFAULT_TOKENIZER)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()

    with_added = Tokenizer.from_file(args.tokenizer)
    spec = json.load(open(args.tokenizer, encoding="utf-8"))
    write_flags_goldens(spec)
    spec["added_tokens"] = []
    without_added = Tokenizer.from_str(json.dumps(spec))

    records = []
    inputs = [(t, None) for t in corpus()] + [(b.decode("utf-8", "replace"), b) for b in INVALID_UTF8]
    for text, raw in inputs:
        ids = with_added.encode(text, add_special_tokens=False).ids
        plain = without_added.encode(text, add_special_tokens=False).ids
        rec = {"hex": raw.hex()} if raw is not None else {"text": text}
        rec["ids"] = ids
        if plain != ids:
            rec["plain"] = plain
        dec = with_added.decode(ids, skip_special_tokens=False)
        if raw is not None or dec != text:
            rec["dec"] = dec
        records.append(rec)
    n_strings = len(records)
    rng = random.Random(7)
    for seq in random_id_sequences(with_added, rng, 400):
        records.append({"decode": seq, "keep": with_added.decode(seq, skip_special_tokens=False),
                        "skip": with_added.decode(seq, skip_special_tokens=True)})
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
    nfc_changed = sum(1 for r in records if "dec" in r and "text" in r and r["dec"] == unicodedata.normalize("NFC", r["text"]))
    print(f"{args.out}: {n_strings} strings ({nfc_changed} changed by NFC), {len(records) - n_strings} decode cases, "
          f"{os.path.getsize(args.out) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
