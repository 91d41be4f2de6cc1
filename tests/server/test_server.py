#!/usr/bin/env python3
"""End-to-end tests of `jetlm serve` with real clients (the `openai` package, curl, raw sockets).

A tiny random-weight Jet-Nemotron-style model (jet/attn/swa layers, untied head, the real
Jet-Nemotron tokenizer from ../shared) is served on a free loopback port. Expected greedy outputs
come from `jetlm generate`, a separate code path (Session, one sequence, no batching).

    python3 tests/server/test_server.py --jetlm build/jetlm [--shared ../shared]

Exits 77 (ctest: skipped) when the shared tokenizer or the openai package is absent.
"""
import argparse
import concurrent.futures as futures
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SKIP = 77
ARGS = None
API_KEY = "test-key"
CTX = 512


def tiny_model(jetlm, shared, out):
    ea = {"jet": {"conv_size": 4, "dconv_generator_reduction": 8, "expand_v": 2, "head_dim": 16,
                  "mode": "chunk", "norm_eps": "1e-5", "num_heads": 4},
          "swa": {"window_size": 16}}
    sets = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
            "num_key_value_heads": 2, "layer_types": ["jet", "attn", "swa", "jet"],
            "tie_word_embeddings": False, "max_position_embeddings": 2048, "efficient_attention_config": ea}
    cmd = [jetlm, "random-model", "--config", "jet-nemotron-2b", "--out", out, "--seed", "7",
           "--tokenizer-from", os.path.join(shared, "hf", "jet-nemotron")]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={json.dumps(v)}"]
    subprocess.run(cmd, check=True, capture_output=True)


class Server:
    """A `jetlm serve` process on a free loopback port."""

    def __init__(self, jetlm, model, *extra, cwd=None):
        self.log = tempfile.NamedTemporaryFile(prefix="jetlm_serve_", suffix=".log", delete=False)
        self.proc = subprocess.Popen([os.path.abspath(jetlm), "serve", "--model", model, "--port", "0", "--threads", "1",
                                      "--ctx", str(CTX), *extra],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=cwd)
        self.log.close()  # the child holds its own descriptor
        line = self.proc.stdout.readline()
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError("server did not start: " + line + open(self.log.name).read())
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self.proc.stdout.close()
        return rc

    def stderr(self):
        with open(self.log.name) as f:
            return f.read()


def request(port, method, path, body=None, headers=None, raw=None, timeout=60):
    """Plain HTTP: returns (status, parsed JSON or text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    h.update(headers or {})
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    conn.request(method, path, body=data, headers=h)
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text


def metrics(port):
    status, text = request(port, "GET", "/metrics")
    assert status == 200
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def wait_for(predicate, timeout=20.0, what="condition"):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def generate_cli(prompt_ids=None, text=None, n=8, chat=False, output_ids=False, ignore_eos=False):
    cmd = [ARGS.jetlm, "generate", "--model", MODEL, "-n", str(n), "--temp", "0", "--threads", "1"]
    if ignore_eos:
        cmd.append("--ignore-eos")
    cmd += ["--prompt-ids", ",".join(map(str, prompt_ids))] if prompt_ids is not None else ["-p", text]
    if chat:
        cmd.append("--chat")
    if output_ids:
        cmd.append("--output-ids")
    r = subprocess.run(cmd, check=True, capture_output=True)
    return r.stdout.decode()


def sse_events(port, path, body):
    """Streams with curl; returns the list of decoded `data:` payloads."""
    r = subprocess.run(["curl", "-sN", "--max-time", "60", f"http://127.0.0.1:{port}{path}",
                        "-H", f"Authorization: Bearer {API_KEY}", "-H", "Content-Type: application/json",
                        "-d", json.dumps(body)], check=True, capture_output=True)
    events = []
    for block in r.stdout.decode().split("\n\n"):
        block = block.strip()
        if not block:
            continue
        assert block.startswith("data: "), block
        payload = block[len("data: "):]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


MODEL = None
SERVER = None
CLIENT = None
TMP = None


def setUpModule():
    global MODEL, SERVER, CLIENT, TMP
    import openai
    TMP = tempfile.mkdtemp(prefix="jetlm_server_test_")
    MODEL = os.path.join(TMP, "tiny")
    tiny_model(ARGS.jetlm, ARGS.shared, MODEL)
    SERVER = Server(ARGS.jetlm, MODEL, "--max-batch", "8", "--max-queue", "64", "--api-key", API_KEY)
    CLIENT = openai.OpenAI(base_url=SERVER.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def tearDownModule():
    if SERVER is not None and SERVER.proc.poll() is None:
        SERVER.stop(signal.SIGKILL)
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


class T1_Basics(unittest.TestCase):
    def test_health_and_models(self):
        status, body = request(SERVER.port, "GET", "/health", headers={"Authorization": ""})
        self.assertEqual((status, body["status"]), (200, "ok"))
        models = CLIENT.models.list()
        self.assertEqual([m.id for m in models.data], ["tiny"])

    def test_model_id_is_the_directory_name_for_relative_paths(self):
        # `--model .` from inside the model directory once served the model id ".".
        for given in [".", "./", "../tiny/."]:
            with self.subTest(given):
                srv = Server(ARGS.jetlm, given, cwd=MODEL)
                try:
                    status, body = request(srv.port, "GET", "/v1/models")
                    self.assertEqual((status, [m["id"] for m in body["data"]]), (200, ["tiny"]))
                finally:
                    srv.stop(signal.SIGKILL)

    def test_completion_matches_generate_with_usage_and_length(self):
        prompt = "The quick brown fox"
        expected = generate_cli(text=prompt, n=10)
        r = CLIENT.completions.create(model="tiny", prompt=prompt, max_tokens=10, temperature=0)
        self.assertEqual(r.choices[0].text, expected)
        self.assertEqual(r.choices[0].finish_reason, "length")
        tok = subprocess.run([ARGS.jetlm, "tokenize", "--model", MODEL, "--text", prompt],
                             check=True, capture_output=True).stdout.decode().strip()
        self.assertEqual(r.usage.prompt_tokens, len(tok.split(",")))
        self.assertEqual(r.usage.completion_tokens, 10)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + 10)

    def test_stop_string_finishes_with_stop(self):
        prompt_ids = [9707, 11, 1879, 0, 42]
        full = CLIENT.completions.create(model="tiny", prompt=prompt_ids, max_tokens=16, temperature=0)
        text = full.choices[0].text
        self.assertEqual(text, generate_cli(prompt_ids=prompt_ids, n=16))
        # A stop string from the middle of the greedy text, at its first occurrence.
        k = len(text) // 2
        stop = text[k:k + 2]
        k = text.find(stop)
        self.assertGreater(len(stop), 0)
        r = CLIENT.completions.create(model="tiny", prompt=prompt_ids, max_tokens=16, temperature=0, stop=[stop])
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertEqual(r.choices[0].text, text[:k])
        self.assertLess(r.usage.completion_tokens, 16)
        # Streamed, the stop string never shows either.
        pieces = [c.choices[0].text for c in CLIENT.completions.create(
            model="tiny", prompt=prompt_ids, max_tokens=16, temperature=0, stop=stop, stream=True)]
        self.assertEqual("".join(pieces), text[:k])

    def test_streaming_completion_equals_non_streaming(self):
        body = {"model": "tiny", "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0,
                "stream": True, "stream_options": {"include_usage": True}}
        events = sse_events(SERVER.port, "/v1/completions", body)
        self.assertEqual(events[-1], "[DONE]")
        usage = events[-2]
        self.assertEqual(usage["choices"], [])
        self.assertEqual(usage["usage"]["completion_tokens"], 12)
        chunks = events[:-2]
        self.assertTrue(all(c["object"] == "text_completion" for c in chunks))
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "length")
        streamed = "".join(c["choices"][0]["text"] for c in chunks)
        self.assertEqual(streamed, generate_cli(text="Once upon a time", n=12))

    def test_chat_non_stream_and_stream(self):
        expected = generate_cli(text="hello there", n=9, chat=True)
        r = CLIENT.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello there"}],
                                           max_tokens=9, temperature=0)
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertEqual(r.choices[0].message.content, expected)
        self.assertIn(r.choices[0].finish_reason, ("length", "stop"))
        self.assertGreater(r.usage.prompt_tokens, 5)  # the template wraps the message
        stream = CLIENT.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello there"}],
                                                max_tokens=9, temperature=0, stream=True,
                                                stream_options={"include_usage": True})
        chunks = list(stream)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, expected)
        finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        self.assertEqual(finals, [r.choices[0].finish_reason])
        self.assertEqual(chunks[-1].usage.completion_tokens, r.usage.completion_tokens)

    def test_sampling_parameters_are_seeded(self):
        kw = dict(model="tiny", prompt="abc", max_tokens=8, temperature=0.9, top_p=0.9, seed=123,
                  presence_penalty=0.5, frequency_penalty=0.3, extra_body={"top_k": 50, "min_p": 0.01})
        a = CLIENT.completions.create(**kw).choices[0].text
        b = CLIENT.completions.create(**kw).choices[0].text
        self.assertEqual(a, b)


class T2_Concurrency(unittest.TestCase):
    def test_many_streaming_clients_equal_generate_and_no_slot_leak(self):
        # 16 distinct prompts of different lengths, each streamed by 2 clients at once: 32 clients
        # sharing 8 slots (the rest queue), all greedy.
        prompts = [[(97 * i + 13 * j) % 150000 + 10 for j in range(1 + (i * 7) % 40)] for i in range(16)]
        n = 10
        with futures.ThreadPoolExecutor(2) as pool:
            expected = list(pool.map(lambda p: generate_cli(prompt_ids=p, n=n), prompts))
        before = metrics(SERVER.port)

        def client(i):
            stream = CLIENT.completions.create(model="tiny", prompt=prompts[i % 16], max_tokens=n, temperature=0,
                                               stream=True)
            text, finish = "", None
            for c in stream:
                text += c.choices[0].text
                finish = c.choices[0].finish_reason or finish
            return text, finish

        t0 = time.time()
        with futures.ThreadPoolExecutor(32) as pool:
            results = list(pool.map(client, range(32)))
        elapsed = time.time() - t0
        for i, (text, finish) in enumerate(results):
            self.assertEqual(text, expected[i % 16], f"client {i}")
            self.assertIn(finish, ("length", "stop"))
        m = metrics(SERVER.port)
        self.assertEqual(m["jetlm_slots_active"], 0)
        self.assertEqual(m["jetlm_queue_depth"], 0)
        self.assertEqual(m["jetlm_cache_tokens"], 0)
        self.assertEqual(m["jetlm_requests_submitted_total"] - before["jetlm_requests_submitted_total"], 32)
        # Batching happened: some decode step ran more than one row.
        self.assertGreater(m["jetlm_decode_batch_size_sum"] - before["jetlm_decode_batch_size_sum"],
                           m["jetlm_decode_batch_size_count"] - before["jetlm_decode_batch_size_count"])
        print(f"  32 streaming clients: {elapsed:.2f} s", file=sys.stderr)


class T3_BadInput(unittest.TestCase):
    def test_bad_requests_get_4xx_while_others_are_served(self):
        # A long stream runs throughout and must complete normally.
        done = {}

        def long_stream():
            events = sse_events(SERVER.port, "/v1/completions",
                                {"model": "tiny", "prompt": "x", "max_tokens": 300, "temperature": 0,
                                 "stream": True, "ignore_eos": True})
            done["events"] = events

        t = threading.Thread(target=long_stream)
        t.start()
        p = SERVER.port
        ok = {"model": "tiny", "prompt": "hi", "max_tokens": 4}
        cases = [
            ("malformed JSON", dict(raw='{"model": "tiny", "prompt": '), 400, None),
            ("not an object", dict(raw='[1, 2]'), 400, None),
            ("wrong type", dict(body={**ok, "temperature": "hot"}), 400, "temperature"),
            ("wrong type int", dict(body={**ok, "max_tokens": 2.5}), 400, "max_tokens"),
            ("bool is not a number", dict(body={**ok, "top_p": True}), 400, "top_p"),
            ("unknown field", dict(body={**ok, "frobnicate": 1}), 400, "frobnicate"),
            ("negative max_tokens", dict(body={**ok, "max_tokens": -5}), 400, "max_tokens"),
            ("zero max_tokens", dict(body={**ok, "max_tokens": 0}), 400, "max_tokens"),
            ("huge max_tokens", dict(body={**ok, "max_tokens": 10**9}), 400, "max_tokens"),
            ("overflowing max_tokens", dict(body={**ok, "max_tokens": 2**64}), 400, "max_tokens"),
            ("INT64_MAX max_tokens", dict(body={**ok, "max_tokens": 2**63 - 1}), 400, "max_tokens"),
            ("temperature out of range", dict(body={**ok, "temperature": 5}), 400, "temperature"),
            ("n > 1", dict(body={**ok, "n": 2}), 400, "n"),
            ("too many stops", dict(body={**ok, "stop": ["a", "b", "c", "d", "e"]}), 400, "stop"),
            ("token id out of range", dict(body={**ok, "prompt": [1, 2, 10**7]}), 400, "prompt"),
            ("prompt longer than context", dict(body={**ok, "prompt": [5] * (CTX + 10)}), 400, "prompt"),
            ("missing prompt", dict(body={"model": "tiny"}), 400, "prompt"),
            ("unknown model", dict(body={**ok, "model": "gpt-9"}), 404, "model"),
            ("wrong api key", dict(body=ok, headers={"Authorization": "Bearer nope"}), 401, None),
            ("missing api key", dict(body=ok, headers={"Authorization": ""}), 401, None),
            ("chat: empty messages", dict(path="/v1/chat/completions",
                                          body={"model": "tiny", "messages": []}), 400, "messages"),
            ("chat: bad role", dict(path="/v1/chat/completions",
                                    body={"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}),
             400, "messages[0].role"),
            ("chat: content type", dict(path="/v1/chat/completions",
                                        body={"model": "tiny", "messages": [{"role": "user", "content": 5}]}),
             400, "messages[0].content"),
            ("unknown route", dict(path="/v1/nothing", body=ok), 404, None),
        ]
        for name, kw, status, param in cases:
            with self.subTest(name):
                got, body = request(p, "POST", kw.get("path", "/v1/completions"), body=kw.get("body"),
                                    headers=kw.get("headers"), raw=kw.get("raw"))
                self.assertEqual(got, status, f"{name}: {body}")
                self.assertIsInstance(body, dict, name)
                err = body["error"]
                self.assertTrue(err["message"], name)
                self.assertIn("type", err)
                if param is not None:
                    self.assertEqual(err["param"], param, f"{name}: {err}")
        # A known route with the wrong method: 405 naming the allowed ones, not 404.
        for method, path, allow in [("GET", "/v1/completions", "POST"), ("GET", "/v1/chat/completions", "POST"),
                                    ("DELETE", "/v1/models", "GET, HEAD"), ("POST", "/health", "GET, HEAD")]:
            with self.subTest(f"{method} {path}"):
                conn = http.client.HTTPConnection("127.0.0.1", p, timeout=60)
                conn.request(method, path, headers={"Authorization": f"Bearer {API_KEY}"})
                resp = conn.getresponse()
                body = json.loads(resp.read().decode())
                conn.close()
                self.assertEqual((resp.status, resp.getheader("Allow")), (405, allow))
                self.assertTrue(body["error"]["message"])
        # A body past the 8 MiB limit: 413, before anything is parsed.
        got, body = request(p, "POST", "/v1/completions", raw='{"prompt": "' + "a" * (9 << 20) + '"}')
        self.assertEqual(got, 413)
        self.assertIn("error", body)
        # The same through the openai client: typed exceptions.
        import openai
        with self.assertRaises(openai.BadRequestError):
            CLIENT.completions.create(model="tiny", prompt="hi", max_tokens=-1)
        with self.assertRaises(openai.NotFoundError):
            CLIENT.completions.create(model="nope", prompt="hi")
        bad_key = openai.OpenAI(base_url=SERVER.url + "/v1", api_key="wrong", max_retries=0)
        with self.assertRaises(openai.AuthenticationError):
            bad_key.completions.create(model="tiny", prompt="hi")
        # A good request still works in between, and the long stream was never disturbed.
        r = CLIENT.completions.create(model="tiny", prompt="hi", max_tokens=3, temperature=0)
        self.assertEqual(r.usage.completion_tokens, 3)
        t.join(timeout=120)
        events = done["events"]
        self.assertEqual(events[-1], "[DONE]")
        self.assertEqual(events[-2]["choices"][0]["finish_reason"], "length")
        wait_for(lambda: metrics(p)["jetlm_slots_active"] == 0, what="slots to be free")

    def test_client_disconnect_cancels_and_frees_slot(self):
        p = SERVER.port
        before = metrics(p)["jetlm_requests_finished_total{reason=\"cancelled\"}"]
        sock = socket.create_connection(("127.0.0.1", p))
        body = json.dumps({"model": "tiny", "prompt": "x", "max_tokens": CTX - 2, "temperature": 0, "stream": True,
                           "ignore_eos": True})
        sock.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
        received = b""
        while received.count(b"data: ") < 3:
            chunk = sock.recv(4096)
            self.assertTrue(chunk, "server closed the stream early")
            received += chunk
        self.assertIn(b"200 OK", received)
        sock.close()
        wait_for(lambda: metrics(p)["jetlm_requests_finished_total{reason=\"cancelled\"}"] == before + 1,
                 what="the request to be cancelled")
        m = metrics(p)
        self.assertEqual(m["jetlm_slots_active"], 0)
        self.assertLess(m["jetlm_completion_tokens_total"], 1e9)


class T4_QueueAndShutdown(unittest.TestCase):
    def test_full_queue_gets_429_and_shutdown_cancels_after_grace(self):
        # One slot, one queue place: the third request is turned away.
        srv = Server(ARGS.jetlm, MODEL, "--max-batch", "1", "--max-queue", "1", "--shutdown-grace", "0.5")
        try:
            socks = []
            body = json.dumps({"model": "tiny", "prompt": "x", "max_tokens": CTX - 2, "stream": True,
                               "ignore_eos": True})
            for _ in range(2):
                s = socket.create_connection(("127.0.0.1", srv.port))
                s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
                socks.append(s)
            wait_for(lambda: metrics(srv.port)["jetlm_queue_depth"] == 1 and metrics(srv.port)["jetlm_slots_active"] == 1,
                     what="one running and one queued request")
            status, err = request(srv.port, "POST", "/v1/completions", body={"model": "tiny", "prompt": "x"})
            self.assertEqual(status, 429)
            self.assertEqual(err["error"]["code"], "rate_limit_exceeded")
            self.assertEqual(metrics(srv.port)["jetlm_requests_rejected_total{reason=\"queue_full\"}"], 1)
            # SIGTERM: the long requests cannot finish in 0.5 s, so they end as cancelled, with a proper
            # end of stream, and the server exits 0.
            rc = srv.stop()
            self.assertEqual(rc, 0, srv.stderr())
            for s in socks:
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                s.close()
                self.assertIn(b'"finish_reason":"cancelled"', data)
                self.assertIn(b"data: [DONE]", data)
        finally:
            if srv.proc.poll() is None:
                srv.stop(signal.SIGKILL)

    def test_zz_sigterm_finishes_in_flight_requests(self):
        # Runs last (the module server goes away): an in-flight stream completes within the grace.
        result = {}

        def stream():
            result["events"] = sse_events(SERVER.port, "/v1/completions",
                                          {"model": "tiny", "prompt": "abc", "max_tokens": 40, "temperature": 0,
                                           "stream": True, "ignore_eos": True})

        t = threading.Thread(target=stream)
        t.start()
        wait_for(lambda: metrics(SERVER.port)["jetlm_slots_active"] == 1, what="the stream to start")
        SERVER.proc.send_signal(signal.SIGTERM)
        t.join(timeout=60)
        rc = SERVER.stop(timeout=30)  # already signalled: just waits
        self.assertEqual(rc, 0, SERVER.stderr())
        events = result["events"]
        self.assertEqual(events[-1], "[DONE]")
        self.assertEqual(events[-2]["choices"][0]["finish_reason"], "length")
        text = "".join(e["choices"][0]["text"] for e in events[:-1])
        self.assertEqual(text, generate_cli(text="abc", n=40, ignore_eos=True))
        log = SERVER.stderr()
        self.assertIn("shutting down", log)
        self.assertIn("stopped", log)
        self.assertRegex(log, r"request \d+ completion: \d+ prompt \+ 40 completion tokens")
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", SERVER.port), timeout=2).close()


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--jetlm", required=True)
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))
    ARGS, rest = parser.parse_known_args()
    if not os.path.exists(os.path.join(ARGS.shared, "hf", "jet-nemotron", "tokenizer.json")):
        print("SKIP: no shared tokenizer at", ARGS.shared)
        return SKIP
    try:
        import openai  # noqa: F401
    except ImportError:
        print("SKIP: the openai package is not installed (pip install openai)")
        return SKIP
    if shutil.which("curl") is None:
        print("SKIP: curl is not installed")
        return SKIP
    prog = unittest.main(argv=[sys.argv[0], "-v", *rest], exit=False)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
