"""Writes tests/tokenizer/data/chat_goldens.json: conversations rendered by transformers.

For every template in tests/tokenizer/data/templates/ and every conversation below (with and
without add_generation_prompt, tools, enable_thinking), the expected text is what
transformers.utils.chat_template_utils.render_jinja_template (the function behind
tokenizer.apply_chat_template(..., tokenize=False)) returns, with bos/eos from the Jet-Nemotron
tokenizer_config.json as apply_chat_template passes them.

    pip install transformers jinja2
    python3 tests/reference/make_chat_goldens.py
"""
import json
import os

from transformers.utils.chat_template_utils import render_jinja_template

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tokenizer", "data")

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                      "parameters": {"type": "object", "properties": {
                                          "city": {"type": "string", "description": "City name"},
                                          "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                                          "required": ["city"]}}},
    {"type": "function", "function": {"name": "add", "description": "Adds numbers — exactly",
                                      "parameters": {"type": "object", "properties": {
                                          "a": {"type": "number"}, "b": {"type": "number", "default": 1.5}}}}},
]


def conversations():
    sys = {"role": "system", "content": "You are terse."}
    u1 = {"role": "user", "content": "Hello!"}
    a1 = {"role": "assistant", "content": "Hi. How can I help?"}
    u2 = {"role": "user", "content": "What is 2+2?"}
    a2 = {"role": "assistant", "content": "4"}
    convs = [
        [u1], [sys, u1], [u1, a1], [u1, a1, u2], [sys, u1, a1, u2, a2], [sys, u1, a1, u2],
        [{"role": "user", "content": ""}],
        [{"role": "system", "content": ""}, u1],
        [{"role": "user", "content": "Unicode: héllo wörld — 你好，世界 🙂👍🏽 مرحبا नमस्ते"}],
        [{"role": "user", "content": "Template-looking text: {{ x }} {% if y %} <|im_end|> <|im_start|>assistant"}],
        [{"role": "user", "content": "line1\nline2\r\nline3\t\ttabs   spaces  \n\n"}],
        [{"role": "user", "content": "  leading and trailing spaces  "}, {"role": "assistant", "content": "\n\nok\n"}],
        [u1, a1, {"role": "system", "content": "A mid-conversation system note."}, u2],
        [{"role": "user", "content": "quote ' and \" and \\ backslash"}],
        [{"role": "user", "content": "x" * 3000}],
    ]
    # Tool calls: arguments as a dict and as a string, several calls, tool results (consecutive).
    call_dict = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]}
    call_str = {"role": "assistant", "content": "Let me check.", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Tōkyō\"}"}}]}
    call_two = {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2.5}}},
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo", "nested": {"x": [1, True, None]}}}}]}
    t1 = {"role": "tool", "content": "{\"temp\": 21}"}
    t2 = {"role": "tool", "content": "3.5"}
    uw = {"role": "user", "content": "Weather in Paris?"}
    convs += [
        [uw, call_dict, t1], [uw, call_dict, t1, {"role": "assistant", "content": "21 degrees."}],
        [sys, uw, call_str, t1], [uw, call_two, t2, t1], [uw, call_two, t2, t1, {"role": "assistant", "content": "Done."}, u2],
        [uw, {"role": "assistant", "content": "", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome"}}]}, t1],
    ]
    # Reasoning (Qwen3): reasoning_content, inline <think>, multi-turn.
    convs += [
        [u1, {"role": "assistant", "content": "<think>\nThe user greets.\n</think>\n\nHello!"}],
        [u1, {"role": "assistant", "content": "Hello!", "reasoning_content": "Greeting back."}, u2],
        [u1, {"role": "assistant", "content": "Hello!", "reasoning_content": "Greeting back."}],
        [u1, {"role": "assistant", "content": "<think>a</think>b"}, u2, {"role": "assistant", "content": "<think>\nc\n</think>\n\nd"}],
        [{"role": "user", "content": "<tool_response>\nx\n</tool_response>"}, a1],
    ]
    return convs


def main():
    with open(os.path.join(HERE, "..", "..", "..", "shared", "hf", "jet-nemotron", "tokenizer_config.json")) as f:
        config = json.load(f)
    bos = config.get("bos_token") or ""
    eos = config.get("eos_token") or ""
    bos = bos["content"] if isinstance(bos, dict) else bos
    eos = eos["content"] if isinstance(eos, dict) else eos
    cases = []
    templates = sorted(n for n in os.listdir(os.path.join(DATA, "templates")) if n.endswith(".jinja"))
    for name in templates:
        with open(os.path.join(DATA, "templates", name)) as f:
            template = f.read()
        for messages in conversations():
            for add_generation_prompt in (False, True):
                variants = [dict(tools=None, extra={})]
                if any(m.get("tool_calls") or m["role"] == "tool" for m in messages) or messages == [{"role": "user", "content": "Hello!"}]:
                    variants.append(dict(tools=TOOLS, extra={}))
                if name.startswith("qwen3"):
                    variants.append(dict(tools=None, extra={"enable_thinking": False}))
                for v in variants:
                    try:
                        rendered, _ = render_jinja_template(conversations=[messages], tools=v["tools"], chat_template=template,
                                                            add_generation_prompt=add_generation_prompt,
                                                            bos_token=bos, eos_token=eos, **v["extra"])
                        expected, error = rendered[0], None
                    except Exception as e:  # the template raised: the engine must raise too
                        expected, error = None, str(e)
                    cases.append({"template": name, "messages": messages, "tools": v["tools"], "extra": v["extra"],
                                  "add_generation_prompt": add_generation_prompt, "expected": expected, "error": error})
    out = os.path.join(DATA, "chat_goldens.json")
    with open(out, "w") as f:
        json.dump({"bos_token": bos, "eos_token": eos, "cases": cases}, f, ensure_ascii=False, indent=0)
    per = {n: sum(c["template"] == n for c in cases) for n in templates}
    print(f"{out}: {len(cases)} cases {per}, {os.path.getsize(out) / 1e3:.0f} KB")


if __name__ == "__main__":
    main()
