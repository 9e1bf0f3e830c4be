"""A hand-written OpenAI-compatible server on 127.0.0.1 for fault injection in tests.

`faults` is consumed one entry per request: "429", "500", "400", "404", "context" (vLLM's HTTP 400 for a prompt
over the context), "echo" (an HTTP 400 whose body quotes the request's headers, its API key included), "timeout",
"malformed", "drop" (close the connection without a response), "truncated" (a reply whose body stops short of its
Content-Length), "trickle" (a whole reply sent one byte every `trickle_s`), "length" (a reply with finish_reason
"length": cut at max_tokens) or "ok". When it runs out, every request is answered normally: by
`reply(request body)` when given, else with a completion that names the request's last message and seed
so tests can check what was sent. Replies report `served_model` as their model (the request's model if None).
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# vLLM 0.32's answer to a prompt over its context (tests/test_vllm_server.py gets it from the real server).
CONTEXT_400 = (b'{"error":{"message":"This model\'s maximum context length is 2048 tokens. However, your prompt contains '
               b'at least 2049 input tokens, which exceeds this limit even without any output tokens. Please reduce the '
               b'length of the input prompt. (parameter=input_tokens, value=2049)","type":"BadRequestError",'
               b'"param":"input_tokens","code":400}}')


class FixtureServer:
    def __init__(self, faults=(), timeout_sleep_s: float = 2.0, port: int = 0, reply=None, trickle_s: float = 1.5,
                 served_model: str | None = None):
        self.faults = list(faults)
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.started: list[float] = []  # time.monotonic() as each request came in
        self.trickle_s = trickle_s
        self.lock = threading.Lock()
        self.timeout_sleep_s = timeout_sleep_s
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                try:
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                except (ValueError, OSError, TypeError):  # a client that hung up before its request was read
                    return
                with server.lock:
                    server.started.append(time.monotonic())
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    fault = server.faults.pop(0) if server.faults else "ok"
                if fault == "timeout":
                    time.sleep(server.timeout_sleep_s)
                if fault == "drop":
                    self.close_connection = True
                    return
                if fault in ("429", "500", "400", "404", "context", "echo"):
                    self.send_response(400 if fault in ("context", "echo") else int(fault))
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(CONTEXT_400 if fault == "context" else json.dumps(
                        {"error": {"message": "bad request", "headers": dict(self.headers)}}).encode()
                        if fault == "echo" else b'{"error": {"message": "injected"}}')
                    return
                last = body["messages"][-1]["content"]
                text = reply(body) if reply else f"re: {last[-30:]} #{body['seed']}"
                payload = (b'{"choices": [' if fault == "malformed" else json.dumps({
                    "model": served_model or body["model"],
                    "choices": [{"message": {"role": "assistant", "content": text},
                                 "finish_reason": "length" if fault == "length" else "stop"}],
                    "usage": {"completion_tokens": 5}}).encode())
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if fault == "truncated":
                    self.wfile.write(payload[: len(payload) // 2])
                    self.close_connection = True
                elif fault == "trickle":
                    for i in range(len(payload)):
                        try:
                            self.wfile.write(payload[i:i + 1])
                            self.wfile.flush()
                        except OSError:  # the client hung up
                            return
                        time.sleep(server.trickle_s)
                else:
                    self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
