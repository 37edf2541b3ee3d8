"""The CLI while `prefloop serve` holds the store: commands run inside the serving process.

DuckDB lets one process write a file, so a second process that opens a served store gets
`StoreLockedError`. Instead of making a researcher stop the app, `prefloop serve` listens
on a loopback port for CLI commands (`ControlServer`) and writes where it listens, with a
random token, to `<store>.control.json`, readable only by its owner (mode 0600). A CLI
command that finds the store locked and that file present sends its arguments there
(`forward`); the serving process runs the same command against the store it already holds
(`open_store` hands out that store), under the store's single-writer discipline, and
streams the command's output back. The CLI prints it and exits with the command's code,
so `--json` output is the same either way.

The token is the permission: whoever can read the file can run any CLI command on the
store as the store's owner, exactly what they could do with the file itself. The port is
bound to 127.0.0.1 only. Paths in the arguments that exist where the CLI runs are made
absolute before they are sent (the serving process has another working directory).
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import logging
import os
import secrets
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from data.errors import ConfigError
from data.http_service import ThreadedHTTPService
from data.processes import alive

log = logging.getLogger("prefloop.app")

_local = threading.local()


def control_file(store_path: str | os.PathLike[str]) -> Path:
    """Where a serving process says how to reach it: next to the store."""
    path = Path(store_path).resolve()
    return path.with_name(path.name + ".control.json")


class _ThreadStream(io.TextIOBase):
    """sys.stdout / sys.stderr that send a forwarded command's output to its own client
    and everything else where it went before."""

    def __init__(self, name: str, original: Any):
        self.name_ = name
        self.original = original

    def write(self, text: str) -> int:
        sink = getattr(_local, "sink", None)
        if sink is None:
            return self.original.write(text)
        sink(self.name_, text)
        return len(text)

    def flush(self) -> None:
        if getattr(_local, "sink", None) is None:
            self.original.flush()

    def isatty(self) -> bool:
        return False if getattr(_local, "sink", None) else self.original.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")


def _route_streams() -> None:
    if not isinstance(sys.stdout, _ThreadStream):
        sys.stdout = _ThreadStream("out", sys.stdout)
    if not isinstance(sys.stderr, _ThreadStream):
        sys.stderr = _ThreadStream("err", sys.stderr)


class ControlServer(ThreadedHTTPService):
    """Runs forwarded CLI commands in this process; `run_command(argv) -> exit code` is the
    CLI itself (`app.cli_common.run_in_process` on the `prefloop` group)."""

    def __init__(self, store_path: str, run_command: Callable[[list[str]], int]):
        self.path = control_file(store_path)
        self.token = secrets.token_urlsafe(32)
        self.run_command = run_command
        super().__init__(self._handler())

    def start(self) -> ControlServer:
        _route_streams()
        super().start()
        info = {"port": self.port, "token": self.token, "pid": os.getpid()}
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(info, handle)
        os.replace(tmp, self.path)  # a reader never sees half a file
        log.info("CLI commands on this store run here (%s)", self.path)
        return self

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                log.debug("control: " + format, *args)

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                given = self.headers.get("Authorization", "")
                if self.path != "/run" or not hmac.compare_digest(
                    given.encode(), f"Bearer {server.token}".encode()
                ):
                    self.send_error(403, "wrong token")
                    return
                try:
                    length = min(int(self.headers.get("Content-Length", "0")), 1 << 20)
                    argv = json.loads(self.rfile.read(length))["argv"]
                    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                        raise ValueError("argv must be a list of strings")
                except (ValueError, KeyError, TypeError) as exc:
                    self.send_error(400, str(exc))
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()
                lock = threading.Lock()

                def sink(stream: str, text: str) -> None:
                    line = json.dumps({"stream": stream, "text": text}) + "\n"
                    with lock, contextlib.suppress(OSError):
                        self.wfile.write(line.encode())
                        self.wfile.flush()

                _local.sink = sink
                try:
                    code = server.run_command(argv)
                finally:
                    _local.sink = None
                with contextlib.suppress(OSError):
                    self.wfile.write((json.dumps({"exit": code}) + "\n").encode())

        return Handler


def forward(store_path: str, argv: list[str], cwd: str | None = None) -> int | None:
    """Run `argv` in the process serving `store_path`; its exit code, or None when no
    process serves it (no control file, or its process is gone)."""
    import httpx

    path = control_file(store_path)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not alive(int(info.get("pid", 0))):
        return None
    sent = absolute_paths(argv, cwd or os.getcwd())
    url = f"http://127.0.0.1:{info['port']}/run"
    headers = {"Authorization": f"Bearer {info['token']}"}
    code = 1
    try:
        with httpx.stream(
            "POST", url, json={"argv": sent}, headers=headers, timeout=None
        ) as response:
            if response.status_code != 200:
                raise ConfigError(
                    f"the process serving {store_path} refused the command "
                    f"({response.status_code}); is {path} from an older `prefloop serve`?"
                )
            for line in response.iter_lines():
                for message in _messages(line):
                    if "exit" in message:
                        code = int(message["exit"])
                    else:
                        target = sys.stdout if message.get("stream") == "out" else sys.stderr
                        target.write(message.get("text", ""))
                        target.flush()
    except httpx.TransportError:
        return None  # it went away: the caller opens the store itself, or says it is locked
    return code


def _messages(line: str) -> Iterator[dict[str, Any]]:
    if line.strip():
        with contextlib.suppress(json.JSONDecodeError):
            yield json.loads(line)


# options whose value is a path to write, which need not exist yet
OUTPUT_OPTIONS = frozenset(
    {"--out", "--report", "--save-local", "--dir", "--runs-root", "--artifact-root"}
)


def absolute_paths(argv: list[str], cwd: str) -> list[str]:
    """Arguments naming an existing path under `cwd`, and the values of `OUTPUT_OPTIONS`,
    made absolute (the serving process has its own working directory)."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
            out.append(f"{name}={_absolute(value, cwd, name in OUTPUT_OPTIONS)}")
        elif arg.startswith("-"):
            out.append(arg)
        else:
            out.append(_absolute(arg, cwd, i > 0 and argv[i - 1] in OUTPUT_OPTIONS))
    return out


def _absolute(value: str, cwd: str, always: bool = False) -> str:
    if not value or Path(value).is_absolute():
        return value
    candidate = Path(cwd) / value
    return str(candidate.resolve()) if always or candidate.exists() else value
