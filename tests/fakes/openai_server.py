"""A scriptable OpenAI-compatible chat-completions server on 127.0.0.1 for tests and benchmarks.

It speaks just enough of `POST /v1/chat/completions` for the real `openai` client:

    with FakeOpenAIServer(responder=always("A")) as server:
        client = AsyncOpenAI(base_url=server.url, api_key="sk-test")
        ...
        assert server.max_in_flight <= 4

Answers come from `server.script` (a FIFO of `Reply`s, consumed one per request) and,
when the script is empty, from `responder(request_body) -> Reply`. Faults are replies
too: `Reply.rate_limited(retry_after=0.2)`, `Reply.server_error()`, `Reply.slow(5)`,
`Reply.truncated()`, `Reply.dropped()`, `Reply.logprobs_unsupported()`, or a text with
no verdict. The server counts in-flight requests (`in_flight`, `max_in_flight`) and
logs every request (`requests`), so tests can assert retries, concurrency and caching.

Generation: a request with `n` gets `n` choices (`Reply.choices` gives their texts;
`honour_n=False` answers one choice, as llama.cpp does); `model_name` is the model the
server says it served (default: the requested one).

The Batch API: `POST /v1/files` (multipart upload), `POST /v1/batches`,
`GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`, `GET /v1/files/{id}/content`. A
batch stays `in_progress` while `batch_hold` is set; the first poll after that answers
every line through the script and the responder, as live calls would be, and completes
it: 200s go to the output file, other statuses to the error file. These requests are
logged in `batch_calls`, not in `requests` (which holds chat completions only).

As a pytest fixture: `from tests.fakes.fixtures import fake_openai_server` in a conftest.
A fixed `latency` (seconds before every answer) serves benchmarks.

Run it standalone (the benchmark does, to keep the server off the client's GIL):

    python -m tests.fakes.openai_server --latency 0.1 --answer A
"""

from __future__ import annotations

import argparse
import contextlib
import email.parser
import email.policy
import hashlib
import itertools
import json
import math
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_TOKEN = re.compile(r"\s*[A-Za-z]+|\s*\d+|\s*[^\sA-Za-z\d]+|\s+")


@dataclass
class Reply:
    """One scripted answer. `status != 200` sends an error body; `fault` breaks the transport."""

    text: str = "A"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (on top of the server latency)
    p_a: float = 0.8  # probability the fake puts on "A" where the answer's verdict token is A/B
    logprobs: bool = True  # False: omit logprobs even when they were asked for
    fault: str | None = None  # "truncate" (cut JSON body) or "drop" (close without answering)
    error_message: str = "fake server error"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    choices: list[str] | None = None  # texts of the `n` choices of a generation request

    @classmethod
    def rate_limited(cls, retry_after: float = 0.2) -> Reply:
        return cls(
            status=429,
            headers={"Retry-After": f"{retry_after:g}"},
            error_message="Rate limit reached; retry later",
        )

    @classmethod
    def server_error(cls, status: int = 500) -> Reply:
        return cls(status=status, error_message="The server had an error")

    @classmethod
    def slow(cls, seconds: float, text: str = "A") -> Reply:
        return cls(text=text, delay=seconds)

    @classmethod
    def truncated(cls, text: str = "A") -> Reply:
        return cls(text=text, fault="truncate")

    @classmethod
    def dropped(cls) -> Reply:
        return cls(fault="drop")

    @classmethod
    def logprobs_unsupported(cls) -> Reply:
        return cls(
            status=400,
            error_message="logprobs is not supported by this model",
            headers={"x-fake-param": "logprobs"},
        )


Responder = Callable[[dict[str, Any]], Reply]


def always(text: str, **kwargs: Any) -> Responder:
    """A responder that answers `text` to every request."""
    return lambda body: Reply(text=text, **kwargs)


def hashed_verdict(body: dict[str, Any]) -> Reply:
    """A deterministic A or B from a hash of the request's messages (the benchmark's judge)."""
    digest = hashlib.sha256(json.dumps(body.get("messages")).encode()).digest()
    return Reply(text="A" if digest[0] % 2 == 0 else "B", p_a=0.3 + 0.4 * (digest[1] / 255))


def last_user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    users = [m.get("content") or "" for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


class FakeOpenAIServer:
    """Threaded HTTP server that imitates `/v1/chat/completions`; a context manager."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        log_bodies: bool = True,
        model_name: str | None = None,
        honour_n: bool = True,
    ):
        self.responder: Responder = responder or always("A")
        self.model_name = model_name
        self.honour_n = honour_n
        # the Batch API
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_hold = False
        self.batch_calls: list[tuple[str, str]] = []  # (method, path) of every files/batches call
        self._ids = itertools.count(1)
        self.latency = latency
        self.script: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.log_bodies = log_bodies
        self.in_flight = 0
        self.max_in_flight = 0
        self.completed = 0
        self._lock = threading.Lock()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.fake = self
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for the OpenAI client (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting and inspection -----------------------------------------------------

    def push(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order; the responder answers after them."""
        with self._lock:
            self.script.extend(replies)

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.max_in_flight = self.in_flight
            self.completed = 0

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is in flight. A handler counts itself out just after its
        answer is written, so a client can hold the answer a moment before that."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.in_flight == 0:
                    return True
            time.sleep(0.005)
        return False

    def settle(self, quiet: float = 0.3, timeout: float = 10.0) -> bool:
        """Wait until no request is in flight and none has arrived for `quiet` s. After a
        client is killed, a request it had sent may still sit in the socket's buffer: the
        server counts it when a handler reads it, which can be after the kill."""
        deadline = time.monotonic() + timeout
        seen, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            with self._lock:
                count, busy = len(self.requests), self.in_flight > 0
            if count != seen or busy:
                seen, since = count, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return True
            time.sleep(0.01)
        return False

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self.script:
                return self.script.popleft()
        return self.responder(body)

    def _enter(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self.completed += 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # many concurrent connects at start-up must not hit the backlog
    fake: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that vanish mid-request (killed batches, timeouts) are expected; stay quiet."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    disable_nagle_algorithm = (
        True  # headers and body go in separate writes: no 40 ms delayed-ACK stall
    )
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.endswith("/models"):
            self._send_json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
        elif "/v1/batches/" in path or "/v1/files/" in path:
            fake = self.server.fake
            with fake._lock:
                fake.batch_calls.append(("GET", path))
            if "/v1/batches/" in path:
                self._batch_status(path.rsplit("/", 1)[1])
            else:
                self._file_content(path)
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.endswith("/v1/files") or "/v1/batches" in path:
            with fake._lock:
                fake.batch_calls.append(("POST", path))
            if path.endswith("/v1/files"):
                self._upload(raw)
            elif path.endswith("/cancel"):
                self._cancel(path.rsplit("/", 2)[1])
            else:
                self._create_batch(json.loads(raw or b"{}"))
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send_json(400, {"error": {"message": "request body is not JSON"}})
            return
        record = {
            "path": self.path,
            "time": time.monotonic(),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body if fake.log_bodies else None,
        }
        fake._enter(record)
        try:
            if not self.path.rstrip("/").endswith("/v1/chat/completions"):
                self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                return
            reply = fake._next_reply(body)
            record["reply"] = reply
            wait = fake.latency + reply.delay
            if wait > 0:
                time.sleep(wait)
            self._answer(body, reply)
        finally:
            fake._leave()

    # -- the Batch API ----------------------------------------------------------------

    def _upload(self, raw: bytes) -> None:
        fake = self.server.fake
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw
        )
        parts = {
            part.get_param("name", header="content-disposition"): part
            for part in message.iter_parts()
        }
        if "file" not in parts:
            self._send_json(400, {"error": {"message": "no file part in the upload"}})
            return
        data = parts["file"].get_payload(decode=True) or b""
        file_id = f"file-fake{next(fake._ids)}"
        with fake._lock:
            fake.files[file_id] = data
        purpose = parts["purpose"].get_content().strip() if "purpose" in parts else "batch"
        self._send_json(200, _file_object(file_id, data, purpose))

    def _create_batch(self, body: dict[str, Any]) -> None:
        fake = self.server.fake
        if body.get("input_file_id") not in fake.files:
            self._send_json(404, {"error": {"message": "no such input file"}})
            return
        batch_id = f"batch_fake{next(fake._ids)}"
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "input_file_id": body["input_file_id"],
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "created_at": int(time.time()),
            "output_file_id": None,
            "error_file_id": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
        }
        with fake._lock:
            fake.batches[batch_id] = batch
        self._send_json(200, batch)

    def _batch_status(self, batch_id: str) -> None:
        fake = self.server.fake
        batch = fake.batches.get(batch_id)
        if batch is None:
            self._send_json(404, {"error": {"message": f"no batch {batch_id}"}})
            return
        if batch["status"] in ("validating", "in_progress"):
            if fake.batch_hold:
                batch["status"] = "in_progress"
            else:
                self._run_batch(batch)
        self._send_json(200, batch)

    def _run_batch(self, batch: dict[str, Any]) -> None:
        fake = self.server.fake
        out, errors = [], []
        for number, line in enumerate(fake.files[batch["input_file_id"]].splitlines()):
            if not line.strip():
                continue
            request = json.loads(line)
            body = request.get("body") or {}
            reply = fake._next_reply(body)
            if reply.status == 200 and reply.fault is None:
                response = {"status_code": 200, "body": completion(body, reply, fake.model_name)}
                out.append({"id": f"batch_req_{number}", "custom_id": request["custom_id"],
                            "response": response, "error": None})  # fmt: skip
            else:
                response = {"status_code": reply.status if reply.status != 200 else 500,
                            "body": {"error": {"message": reply.error_message}}}  # fmt: skip
                errors.append({"id": f"batch_req_{number}", "custom_id": request["custom_id"],
                               "response": response, "error": None})  # fmt: skip
        with fake._lock:
            for name, lines in (("output_file_id", out), ("error_file_id", errors)):
                if lines:
                    file_id = f"file-fake{next(fake._ids)}"
                    fake.files[file_id] = "".join(json.dumps(x) + "\n" for x in lines).encode()
                    batch[name] = file_id
            batch["status"] = "completed"
            batch["completed_at"] = int(time.time())
            batch["request_counts"] = {
                "total": len(out) + len(errors),
                "completed": len(out),
                "failed": len(errors),
            }

    def _cancel(self, batch_id: str) -> None:
        batch = self.server.fake.batches.get(batch_id)
        if batch is None:
            self._send_json(404, {"error": {"message": f"no batch {batch_id}"}})
            return
        if batch["status"] in ("validating", "in_progress"):
            batch["status"] = "cancelled"
        self._send_json(200, batch)

    def _file_content(self, path: str) -> None:
        parts = path.split("/")
        file_id = parts[-2] if parts[-1] == "content" else parts[-1]
        data = self.server.fake.files.get(file_id)
        if data is None:
            self._send_json(404, {"error": {"message": f"no file {file_id}"}})
        elif parts[-1] == "content":
            self._send_bytes(200, data)
        else:
            self._send_json(200, _file_object(file_id, data, "batch"))

    # -- chat completions -------------------------------------------------------------

    def _answer(self, body: dict[str, Any], reply: Reply) -> None:
        if reply.fault == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if reply.status != 200:
            error = {"message": reply.error_message, "type": "fake_error", "code": reply.status}
            if "x-fake-param" in reply.headers:
                error["param"] = reply.headers["x-fake-param"]
            headers = {k: v for k, v in reply.headers.items() if k != "x-fake-param"}
            self._send_json(reply.status, {"error": error}, headers)
            return
        fake = self.server.fake
        n = int(body.get("n") or 1) if fake.honour_n else 1
        payload = completion(body, reply, fake.model_name, n=n)
        if reply.fault == "truncate":
            data = json.dumps(payload).encode()
            self._send_bytes(200, data[: len(data) // 2])
            return
        self._send_json(200, payload)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), headers)

    def _send_bytes(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _file_object(file_id: str, data: bytes, purpose: str) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": len(data),
        "created_at": int(time.time()),
        "filename": f"{file_id}.jsonl",
        "purpose": purpose,
        "status": "processed",
    }


def completion(
    body: dict[str, Any], reply: Reply, model_name: str | None = None, *, n: int = 1
) -> dict[str, Any]:
    """A chat.completion object answering `body` with `reply.text` (`n` choices: the texts
    of `reply.choices`, else `reply.text` each time)."""
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    texts = (reply.choices or [reply.text] * n)[:n] if n > 1 else [reply.text]
    choices, all_tokens = [], []
    for index, text in enumerate(texts):
        tokens = _TOKEN.findall(text) or [text]
        if max_tokens:
            tokens = tokens[: int(max_tokens)]
            text = "".join(tokens)
        choice: dict[str, Any] = {
            "index": index,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
            "logprobs": None,
        }
        if body.get("logprobs") and reply.logprobs:
            top_n = int(body.get("top_logprobs") or 0)
            choice["logprobs"] = {
                "content": [_token_logprobs(t, reply.p_a, top_n) for t in tokens],
                "refusal": None,
            }
        choices.append(choice)
        all_tokens += tokens
    tokens = all_tokens
    prompt_chars = sum(len(str(m.get("content") or "")) for m in body.get("messages") or [])
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name or body.get("model", "fake"),
        "choices": choices,
        "usage": {
            "prompt_tokens": reply.prompt_tokens
            if reply.prompt_tokens is not None
            else prompt_chars // 4 + 1,
            "completion_tokens": reply.completion_tokens
            if reply.completion_tokens is not None
            else len(tokens),
            "total_tokens": 0,
        },
    }


def _token_logprobs(token: str, p_a: float, top_n: int) -> dict[str, Any]:
    stripped = token.strip()
    if stripped in ("A", "B"):
        space = token[: len(token) - len(token.lstrip())]
        probs = {"A": p_a, "B": 1.0 - p_a}
        alts = [
            {"token": space + name, "logprob": math.log(max(p, 1e-9)), "bytes": None}
            for name, p in sorted(probs.items(), key=lambda kv: -kv[1])
        ]
        alts = alts[:top_n]
        own = math.log(max(probs[stripped], 1e-9))
    else:
        own = -0.01
        alts = [{"token": token, "logprob": own, "bytes": None}][:top_n]
    return {"token": token, "logprob": own, "bytes": None, "top_logprobs": alts}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake OpenAI-compatible server.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="Seconds before every answer.")
    parser.add_argument(
        "--answer",
        default=None,
        help="Always answer this text (default: a hashed A or B per request).",
    )
    args = parser.parse_args(argv)
    responder = always(args.answer) if args.answer else hashed_verdict
    server = FakeOpenAIServer(responder, latency=args.latency, port=args.port, log_bodies=False)
    server.start()
    print(server.url, flush=True)
    try:
        for line in sys.stdin:  # a line "stats" prints counters; EOF stops the server
            if line.strip() == "stats":
                print(
                    json.dumps(
                        {"requests": server.request_count, "max_in_flight": server.max_in_flight}
                    ),
                    flush=True,
                )
            elif line.strip() == "reset":
                server.reset_counts()
                print("{}", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
