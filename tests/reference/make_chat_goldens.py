"""Writes tests/tokenizer/data/chat_goldens.json: conversations rendered by transformers.

Two kinds of cases:
  - "cases": every template in tests/tokenizer/data/templates/ x every conversation below (with and
    without add_generation_prompt, tools, enable_thinking), rendered by
    tokenizer.apply_chat_template(messages, tokenize=False, chat_template=..., ...) with the
    Jet-Nemotron tokenizer (so bos/eos/pad come from its special_tokens_map, and keys whose value is
    None are dropped from the messages, exactly as transformers does).
  - "jinja_cases": small templates rendered by the very Jinja environment transformers builds
    (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, its tojson,
    raise_exception, namespace, dict), to pin down the interpreter's semantics one construct at a time.
A case whose rendering raises is stored with expected=null and the error text: jetlm must raise too.

    pip install transformers jinja2
    python3 tests/reference/make_chat_goldens.py
"""
import json
import os

from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import _compile_jinja_template

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tokenizer", "data")
TOKENIZER_DIR = os.path.join(HERE, "..", "..", "..", "shared", "hf", "jet-nemotron")

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                      "parameters": {"type": "object", "properties": {
                                          "city": {"type": "string", "description": "City name"},
                                          "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                                          "required": ["city"]}}},
    {"type": "function", "function": {"name": "add", "description": "Adds numbers — exactly, \"quoted\"",
                                      "parameters": {"type": "object", "properties": {
                                          "a": {"type": "number"}, "b": {"type": "number", "default": 1.5},
                                          "big": {"type": "integer", "maximum": 12345678901234, "minimum": -0.001}}}}},
]


def conversations():
    sys = {"role": "system", "content": "You are terse."}
    u1 = {"role": "user", "content": "Hello!"}
    a1 = {"role": "assistant", "content": "Hi. How can I help?"}
    u2 = {"role": "user", "content": "What is 2+2?"}
    a2 = {"role": "assistant", "content": "4"}
    convs = [
        [u1], [sys, u1], [u1, a1], [u1, a1, u2], [sys, u1, a1, u2, a2], [sys, u1, a1, u2],
        [sys], [sys, a1], [a1], [u1, u2], [sys, sys, u1],
        [{"role": "user", "content": ""}],
        [{"role": "system", "content": ""}, u1],
        [u1, {"role": "assistant", "content": ""}],
        [{"role": "user", "content": "Unicode: héllo wörld — 你好，世界 🙂👍🏽 مرحبا नमस्ते \u2028 \u0000 \u001f"}],
        [{"role": "user", "content": "Template-looking text: {{ x }} {% if y %} {# z #} <|im_end|> <|im_start|>assistant"}],
        [{"role": "user", "content": "line1\nline2\r\nline3\t\ttabs   spaces  \n\n"}],
        [{"role": "user", "content": "  leading and trailing spaces  "}, {"role": "assistant", "content": "\n\nok\n"}],
        [u1, a1, {"role": "system", "content": "A mid-conversation system note."}, u2],
        [{"role": "user", "content": "quote ' and \" and \\ backslash"}],
        [{"role": "user", "content": "x" * 600}],
        [{"role": "user", "content": "Hi", "name": "alice"}, {"role": "assistant", "content": "Hello alice", "name": "bot"}],
        [{"role": "user", "content": "What does </think> mean?"}, {"role": "assistant", "content": "A tag."}],
    ]
    # Tool calls: arguments as a dict and as a string, several calls, tool results (consecutive), content None
    # (transformers drops None-valued keys) or missing.
    call_dict = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]}
    call_str = {"role": "assistant", "content": "Let me check.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Tōkyō\"}"}}]}
    call_two = {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2.5}}},
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo", "nested": {"x": [1, True, None, 1e-7, 1e22]}}}}]}
    call_str_none = {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}},
        {"type": "function", "function": {"name": "add", "arguments": "{\"a\": 1}"}}]}
    call_no_content = {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "add", "arguments": {}}}]}
    t1 = {"role": "tool", "content": "{\"temp\": 21}"}
    t2 = {"role": "tool", "content": "3.5"}
    t_named = {"role": "tool", "content": "sunny", "tool_call_id": "call_1", "name": "get_weather"}
    uw = {"role": "user", "content": "Weather in Paris?"}
    tool_convs = [
        [uw, call_dict, t1], [uw, call_dict, t1, {"role": "assistant", "content": "21 degrees."}],
        [sys, uw, call_str, t_named], [uw, call_two, t2, t1], [uw, call_two, t2, t1, {"role": "assistant", "content": "Done."}, u2],
        [uw, {"role": "assistant", "content": "", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome"}}]}, t1],
        [uw, call_str_none, t1, t2], [uw, call_str_none, t1, t2, {"role": "assistant", "content": "Rome is warm."}],
        [uw, call_no_content, t2], [t1, uw], [uw, call_dict],
        [uw, {"role": "assistant", "content": "<think>\nNeed weather.\n</think>\n\n", "tool_calls": call_dict["tool_calls"]}, t1],
        [uw, {"role": "assistant", "content": "", "reasoning_content": "Need weather.", "tool_calls": call_dict["tool_calls"]}, t1],
    ]
    convs += tool_convs
    # Reasoning (Qwen3, QwQ): reasoning_content (and its aliases), inline <think>, multi-turn.
    convs += [
        [u1, {"role": "assistant", "content": "<think>\nThe user greets.\n</think>\n\nHello!"}],
        [u1, {"role": "assistant", "content": "Hello!", "reasoning_content": "Greeting back."}, u2],
        [u1, {"role": "assistant", "content": "Hello!", "reasoning_content": "Greeting back."}],
        [u1, {"role": "assistant", "content": "Hello!", "reasoning_content": ""}],
        [u1, {"role": "assistant", "content": "Hello!", "reasoning_content": None}],
        [u1, {"role": "assistant", "content": "Hello!", "thinking": "Via the thinking key."}],
        [u1, {"role": "assistant", "content": "Hello!", "reasoning": "Via the reasoning key."}, u2],
        [u1, {"role": "assistant", "content": "<think>a</think>b"}, u2, {"role": "assistant", "content": "<think>\nc\n</think>\n\nd"}],
        [u1, {"role": "assistant", "content": "<think>a</think>b"}, u2],
        [{"role": "user", "content": "<tool_response>\nx\n</tool_response>"}, a1],
        [u1, {"role": "assistant", "content": "\n\nplain, no think"}],
    ]
    return convs, tool_convs


# Small templates with their variables: each pins one piece of Jinja/transformers semantics.
def jinja_cases():
    ctx = {"d": {"b": 1, "a": [1, 2], "s": "x"}, "l": [3, 1, 2], "s": "Hello World", "n": None, "t": True, "f": 1.5,
           "i": 7, "e": "", "el": [], "ed": {}, "u": "héllo 🙂", "msgs": [{"role": "user", "content": "hi"},
                                                                       {"role": "assistant", "content": "yo"}]}
    exprs = [
        # arithmetic and number printing
        "1 + 2 * 3", "7 // 2", "-7 // 2", "7 % 3", "-7 % 3", "7 % -3", "2 ** 10", "2 ** -1", "1 / 2", "4 / 2", "10 / 4",
        "7.5 // 2", "7.5 % 2", "1e3", "0.1 + 0.2", "1.0", "1e20", "1e16", "1e15", "123456789.123", "1.5e-7", "0.0001",
        "0.00001", "-0.0", "2 ** 0.5", "1 + 1.0", "true + 1", "3 * 'ab'", "'ab' * 3", "[1] * 2", "'a' + 'b'",
        "[1] + [2, 3]", "1_000", "-i", "+i", "- f", "f * 2", "i / 7", "10 - 3 - 2", "2 ** 3 ** 2", "-2 ** 2",
        "1 + 'a'", "'a' - 'b'", "n + 1", "1 / 0", "1 // 0", "1 % 0",
        # concatenation and str()
        "'a' ~ 1 ~ none ~ true ~ 1.5", "x ~ 'a'", "l ~ d", "s ~ n",
        # literals and repr
        "[1, 'x', none, true, 1.5, [], {}]", "{'k': 'v', 'n': {'m': [1]}}", "('a', 1)", "('a',)", "()",
        "\"it's\"", "'say \"hi\"'", "['it\\'s', \"a\\\"b\"]", "['\\n\\t', 'é', '\\x01']", "d", "l", "msgs",
        "'\\u00e9\\x41\\U0001F600'", "'a\\\\b'", "'\\d'", "'adjacent' 'strings'",
        # comparisons and logic
        "1 < 2.5", "'a' < 'b'", "'B' < 'a'", "[1, 2] == [1, 2]", "[1, 2] < [1, 3]", "1 == '1'", "none == none", "1 == 1.0",
        "true == 1", "d == {'b': 1, 'a': [1, 2], 's': 'x'}", "'a' != 'b'", "1 < 'a'", "none < 1", "1 < 2 < 3", "3 > 2 > 2",
        "not 1", "not ''", "not x", "x == none", "x is none", "n is none", "1 and 2", "0 and 2", "0 or ''", "'' or 'z'",
        "n or 'dflt'", "e or el", "t and 'yes'", "not t or f",
        # membership
        "'a' in d", "'z' in d", "1 in l", "1.0 in l", "'ell' in s", "'x' not in s", "3 in [1, 2, 3]", "'x' in n",
        "'a' in 'a'", "[1] in [[1]]",
        # undefined
        "x", "x | length", "d.missing", "d['missing']", "l[10]", "l[-1]", "l[-4]", "s[0]", "s[-1]", "s[20]", "x.y",
        "d.missing.y", "x[0]", "x + 'a'", "x | default('dflt')", "n | default('dflt')", "e | default('dflt', true)",
        "x | default", "d.get('missing')", "d.get('missing', 5)", "d.get('b')", "x | tojson", "x | string", "x is defined",
        "x is undefined", "d.b is defined", "d.missing is defined", "x is not defined", "(x or 'z')", "x == x",
        # slices
        "l[::-1]", "l[1:]", "l[:-1]", "l[::2]", "l[5:]", "l[-10:2]", "s[::-1]", "s[2:5]", "s[-5:]", "u[::-1]", "msgs[::-1]",
        "l[1:2:0]", "u[0]", "u[-1]", "u[1:3]",
        # attribute/item access
        "d.b", "d['b']", "d.a[1]", "d['a'][0]", "msgs[0].role", "msgs[1]['content']", "l.0", "d.items()", "d.keys()",
        "d.values()", "d.items() | list", "s.missing", "l.missing", "(1).missing", "d.items()[0]",
        # string methods
        "s.upper()", "s.lower()", "s.title()", "'hello world'.capitalize()", "'  a b  '.strip()", "'xxaxx'.strip('x')",
        "'  a'.lstrip()", "'a  '.rstrip()", "'\\n\\na\\n'.lstrip('\\n')", "'a,b,,c'.split(',')", "' a  b '.split()",
        "'a b c'.split(' ', 1)", "'abc'.split('')", "s.startswith('He')", "s.startswith(('x', 'H'))", "s.endswith('ld')",
        "s.replace('l', 'L')", "s.replace('l', 'L', 1)", "s.find('o')", "s.find('z')", "s.count('l')", "s.split('o')[-1]",
        "'a</think>b'.split('</think>')[0]", "'abc'.index('c')", "'ab'.join(['x', 'y'])", "'x y'.title()",
        "'Ab'.swapcase()", "'12'.isdigit()", "'ab'.isalpha()", "'A1'.isupper()", "' \\t'.isspace()",
        "'abc'.removeprefix('a')", "'abc'.removesuffix('c')", "s.rsplit(' ', 1)", "'A\\nB'.splitlines()",
        "u.upper()", "u.title()", "'éa'.capitalize()", "u | length", "u.startswith('hé')", "u.find('l')",
        # filters
        "s | length", "l | length", "d | length", "el | length", "l | first", "l | last", "el | first", "s | first",
        "l | join('-')", "l | join", "['a', 'b'] | join(', ')", "l | sort", "l | sort(reverse=true)", "l | max", "l | min",
        "l | sum", "l | reverse | list", "s | reverse", "l | unique | list", "[1, 1, 2] | unique | list",
        "'  x ' | trim", "s | upper", "s | lower", "'abc' | title", "'abc' | capitalize", "s | replace('o', '0')",
        "'3' | int", "'3.7' | float", "3.7 | int", "'x' | int", "-3 | abs", "2.567 | round", "2.567 | round(2)",
        "2.5 | round", "d | items | list", "d | list", "s | list", "d | dictsort", "'a\"b<c>&' | e", "'<b>' | safe",
        "s | wordcount", "l | map('string') | list", "[1.5, 2] | map('int') | list",
        "msgs | map(attribute='role') | list", "msgs | selectattr('role', 'equalto', 'user') | list",
        "msgs | rejectattr('role', 'equalto', 'user') | list", "msgs | selectattr('role') | list",
        "[0, 1, 2, none] | select | list", "[0, 1, 2] | reject | list", "l | select('odd') | list", "1 | string",
        "1.5 | string", "n | string", "t | string", "l | string", "s | indent(2)", "'a\\n\\nb\\n' | indent(2)",
        "'a\\n\\nb' | indent(2, true, true)", "msgs | map(attribute='role') | join(', ')", "msgs | sort(attribute='role', reverse=true)",
        "['b', 'A', 'a'] | sort", "['b', 'A', 'a'] | sort(case_sensitive=true)", "['b', 'A', 'a'] | unique | list",
        "msgs | max(attribute='content')", "[1, 2.5] | sum", "msgs | sum(attribute='x', start=1)",
        "l | count", "d | tojson", "l | tojson", "s | tojson", "u | tojson", "n | tojson", "f | tojson",
        "1e20 | tojson", "1.0 | tojson", "'a\\u001fb\\u007f' | tojson", "'</script>' | tojson", "d | tojson(indent=2)",
        "{'a': [], 'b': {}} | tojson(indent=2)", "[[1, [2]], {'k': [3]}] | tojson(indent=4)", "d | tojson(sort_keys=true)",
        "d | tojson(separators=(',', ':'))", "u | tojson(ensure_ascii=true)", "d | tojson(indent='  ')",
        "x | tojson(indent=1)", "s | nosuchfilter",
        # tests
        "s is string", "1 is string", "d is mapping", "l is mapping", "l is sequence", "s is sequence", "1 is sequence",
        "d is iterable", "1 is number", "1.5 is number", "t is number", "t is boolean", "1 is boolean", "1 is integer",
        "t is integer", "1.0 is float", "n is none", "t is true", "1 is true", "false is false", "0 is false",
        "2 is even", "3 is odd", "9 is divisibleby 3", "9 is divisibleby(4)", "1 is eq 1", "1 is ne 2", "1 is lt 2",
        "1 is gt 2", "1 is le 1", "'a' is in 'abc'", "2 is in l", "s is lower", "'abc' is lower", "'ABC' is upper",
        "raise_exception is callable", "s is callable", "s is nosuchtest", "1 is sameas 1", "n is sameas none",
        "x is defined and x.y", "d is not none", "n is not none",
        # conditional expressions and misc
        "'yes' if 1 > 2 else 'no'", "'yes' if 1 < 2", "'yes' if 1 > 2", "(1 if t else 2) + 1", "range(5) | list",
        "range(1, 10, 3) | list", "range(5, 0, -2) | list", "range(0) | list", "dict(a=1, b=2)", "dict(a=1)['a']",
        "namespace(a=1).a", "raise_exception('bad ' ~ 'thing')", "nosuchfunction()", "s()", "(1, 2)[0]",
    ]
    cases = [("{{ " + e + " }}", ctx) for e in exprs]
    statements = [
        # loops
        "{% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}",
        "{% for x in l %}{{ loop.previtem }}>{{ x }}>{{ loop.nextitem }}|{% endfor %}",
        "{% for x in l %}{{ loop.previtem is defined }}{{ loop.nextitem is defined }}{% endfor %}",
        "{% for x in l %}{{ loop.cycle('a', 'b') }}{% endfor %}",
        "{% for x in el %}a{% else %}empty{% endfor %}", "{% for x in x %}a{% else %}none{% endfor %}",
        "{% for x in n %}a{% endfor %}", "{% for x in 5 %}a{% endfor %}",
        "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", "{% for k in d %}{{ k }}{% endfor %}",
        "{% for c in u %}[{{ c }}]{% endfor %}", "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}",
        "{% for a, b in [[1, 2, 3]] %}{{ a }}{% endfor %}",
        "{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{{ loop.index }}{{ loop.length }}{% endfor %}",
        "{% for x in l %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}",
        "{% for x in [1, 2] %}{% for y in [3, 4] %}{{ loop.index }}{{ x }}{{ y }} {% endfor %}{{ loop.index }}|{% endfor %}",
        "{% for m in msgs %}{{ m.role }}:{{ m.content }}{% if not loop.last %}, {% endif %}{% endfor %}",
        "{% for x in l %}{% endfor %}{{ x }}", "{% for x in l %}{% set y = x %}{% endfor %}[{{ y }}]",
        "{% set x = 5 %}{% for x in l %}{% endfor %}{{ x }}",
        "{% for x in l %}{{ loop.index }}{% for y in l %}{% endfor %}{{ loop.index }}{% endfor %}",
        "{% for i in range(3) %}{{ i }}{% endfor %}", "{% for x in l | sort %}{{ x }}{% endfor %}",
        "{% for x in l recursive %}{{ x }}{% endfor %}",
        # scoping and set
        "{% set a = 1 %}{% for x in [5] %}{% set a = x %}{{ a }}{% endfor %}{{ a }}",
        "{% if true %}{% set a = 2 %}{% endif %}{{ a }}",
        "{% set ns = namespace(n=0, s='') %}{% for x in l %}{% set ns.n = ns.n + x %}{% set ns.s = ns.s ~ x %}{% endfor %}{{ ns.n }} {{ ns.s }}",
        "{% set ns = namespace() %}{% set ns.a = 1 %}{{ ns.a }}", "{% set ns = namespace(d) %}{{ ns.b }}",
        "{% set ns = namespace(a=1) %}{{ ns }}", "{% set ns = namespace(a=1) %}{{ ns.missing }}",
        "{% set d2 = {} %}{% set d2.a = 1 %}", "{% set a, b = 1, 2 %}{{ a }}{{ b }}", "{% set a, b = [3, 4] %}{{ a }}{{ b }}",
        "{% set block %}in{{ 1 }}\n{% endset %}[{{ block }}]", "{% set s = s ~ '!' %}{{ s }}",
        "{% set content = msgs[0].content %}{% if true %}{% set content = 'changed' %}{% endif %}{{ content }}",
        "{% set l2 = l %}{{ l2.append(4) }}{{ l }}", "{% set x = d.update({'z': 1}) %}{{ d }}",
        # if
        "{% if n %}A{% elif e %}B{% elif i > 5 %}C{% else %}D{% endif %}", "{% if x %}A{% else %}B{% endif %}",
        "{% if x is defined %}A{% endif %}{% if x is not defined %}B{% endif %}", "{% if msgs[0]['role'] == 'user' %}U{% endif %}",
        "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ add_generation_prompt }}",
        # macros
        "{% macro greet(name, p='!') %}hi {{ name }}{{ p }}{% endmacro %}{{ greet('x') }}{{ greet('y', p='?') }}{{ greet() }}",
                "{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(3) }}",
        # raise, comments, raw, unknown constructs
        "{% if true %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}",
        "a{# a comment #}b", "a{#- trimmed -#}  \n  b", "{% raw %}{{ not evaluated }}{% endraw %}",
        "{% with a = 1 %}{{ a }}{% endwith %}", "{% set a = 2 %}{% with a = 1, b = a %}{{ a }}{{ b }}{% set c = 3 %}{% endwith %}{{ a }}{{ c }}", "{% include 'x' %}",
        "{% unknowntag %}", "{% if true %}never closed", "{% for x in l %}", "{{ 'unterminated }}", "{{ 1 + }}",
        "{{ }}", "{% endif %}", "{{ d.items( }}", "{% set %}", "{{ a.b.c.d.e }}", "{{ (1 }}",
        "{% for x in l %}{% break %}{% endfor %}{% break %}",
        # whitespace control, trim_blocks and lstrip_blocks
        "a  {{- 'b' -}}  c", "a  {{ 'b' }}  c", "x\n  {% if true %}\n  y\n  {% endif %}\nz", "x\n  {% if true %}  y  {% endif %}  \nz",
        "{# comment #}\nA", "{{ 'v' }}\nw", "a\n  {#- c -#}\n  b", "a\n   {{ 'x' }}\nb", "a {% if true %}b{% endif %}\nc",
        "  {%- if true %}\n  x\n  {%- endif %}\n  y", "  {%+ if true %}x{% endif +%}\ny", "{% if true -%}\n\n  x  \n\n{%- endif %}",
        "\t{% if true %}\n\tx\n\t{% endif %}\n", "line\r\n{% if true %}\r\nx\r\n{% endif %}\r\nend\r\n", "text\n", "text\n\n",
        "{% if true %}x{% endif %}\n", "{{ 'a' }}\n", "  {{- 'a' }}  ", "a{%- if true -%}  b  {%- endif -%}c",
        "{% for x in l %}\n  {{ x }}\n{% endfor %}\n", "{%- for x in l -%}\n  {{ x }}\n{%- endfor -%}\n",
        "{{'a'}}{{\n'b'\n}}", "{% if true %}   \n{% endif %}", "  {% if true %}  x{% endif %}", "{ {{ '{' }} }",
        "{{ '}}' }}", "{{ '%}' }}{% if '%}' %}ok{% endif %}", "{{ '{#' }}",
        "\n  {% set x = 1 %}\n  {{ x }}\n", "a{{ 'x' -}}\n\n{{- 'y' }}b",
        # the chat templates' idioms
        "{%- set ns = namespace(multi_step_tool=true, last_query_index=msgs|length - 1) %}{%- for message in msgs[::-1] %}{%- set index = (msgs|length - 1) - loop.index0 %}{%- if ns.multi_step_tool and message.role == 'user' %}{%- set ns.multi_step_tool = false %}{%- set ns.last_query_index = index %}{%- endif %}{%- endfor %}{{ ns.last_query_index }}",
        "{{- 'a' + msgs[0].content.split('</think>')[-1].lstrip('\\n') }}",
        "{%- for tool in [d, l] %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}",
        "{{ strftime_now('%Y') | length }}", "{{ bos_token }}{{ eos_token }}",
    ]
    cases += [(s, ctx) for s in statements]
    # Deep nesting and big loops must end cleanly (jinja2 itself manages these).
    cases.append(("{% for a in range(300) %}{% for b in range(300) %}{% endfor %}{% endfor %}done", ctx))
    cases.append(("{% if true %}" * 60 + "deep" + "{% endif %}" * 60, ctx))
    cases.append(("{{ " + "(" * 40 + "1" + ")" * 40 + " }}", ctx))
    return cases


# Jinja features no chat template we target uses: jetlm raises an error naming them (checked by the test).
UNSUPPORTED = [
    "{{ '{} {}'.format(1, 'a') }}", "{{ s.center(15) }}", "{{ s | center(15) }}", "{{ s | truncate(5) }}",
    "{{ l | batch(2) | list }}", "{{ '%s=%d' | format('a', 3) }}", "{{ 'x' | pprint }}",
    "{% macro outer() %}{{ caller() }}{% endmacro %}{% call outer() %}inside{% endcall %}",
    "{% filter upper %}text{% endfilter %}",
]


def render_case(tokenizer, template, messages, tools, extra, add_generation_prompt):
    try:
        expected = tokenizer.apply_chat_template(messages, tools=tools, chat_template=template, tokenize=False,
                                                 add_generation_prompt=add_generation_prompt, **extra)
        return expected, None
    except Exception as e:  # the template raised: the engine must raise too
        return None, f"{type(e).__name__}: {e}"


def main():
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    convs, tool_convs = conversations()
    cases = []
    templates = sorted(n for n in os.listdir(os.path.join(DATA, "templates")) if n.endswith(".jinja"))
    for name in templates:
        with open(os.path.join(DATA, "templates", name)) as f:
            template = f.read()
        for index, messages in enumerate(convs):
            variants = [dict(agp=False, tools=False, extra={}), dict(agp=True, tools=False, extra={})]
            if messages in tool_convs or index in (0, 1):
                variants.append(dict(agp=True, tools=True, extra={}))
            if index in (0, 1):
                variants.append(dict(agp=False, tools=True, extra={}))
            if name.startswith("qwen3"):
                variants.append(dict(agp=True, tools=False, extra={"enable_thinking": False}))
                if index == 0:
                    variants.append(dict(agp=True, tools=False, extra={"enable_thinking": True}))
            for v in variants:
                expected, error = render_case(tokenizer, template, messages, TOOLS if v["tools"] else None, v["extra"],
                                              v["agp"])
                cases.append({"template": name, "conversation": index, "tools": v["tools"], "extra": v["extra"],
                              "add_generation_prompt": v["agp"], "expected": expected, "error": error})
    jinja = []
    special = tokenizer.special_tokens_map
    for source, ctx in jinja_cases() + [(u, jinja_cases()[0][1]) for u in UNSUPPORTED]:
        try:
            expected, error = _compile_jinja_template(source).render(**ctx, **special), None
        except Exception as e:
            expected, error = None, f"{type(e).__name__}: {e}"
        jinja.append({"template": source, "expected": expected, "error": error, "unsupported": source in UNSUPPORTED})
    out = os.path.join(DATA, "chat_goldens.json")
    golden = {"special_tokens": special, "tools": TOOLS, "conversations": convs, "cases": cases,
              "jinja_context": jinja_cases()[0][1], "jinja_cases": jinja}
    with open(out, "w") as f:
        json.dump(golden, f, ensure_ascii=False, indent=0)
    per = {n: sum(c["template"] == n for c in cases) for n in templates}
    errors = sum(c["expected"] is None for c in cases)
    print(f"{out}: {len(convs)} conversations, {len(cases)} cases {per} ({errors} raise), "
          f"{len(jinja)} jinja cases ({sum(c['expected'] is None for c in jinja)} raise), {os.path.getsize(out) / 1e3:.0f} KB")


if __name__ == "__main__":
    main()
