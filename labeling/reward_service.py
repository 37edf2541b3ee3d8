"""The reward ensemble behind HTTP, in OpenRLHF's remote reward-model protocol.

    prefloop serve-reward --db store.duckdb --port 5000
    # OpenRLHF: --remote_rm_url http://HOST:5000/get_reward ; verl: a reward function that
    # POSTs to the same URL

`POST /get_reward` takes `{"query": [...], "prompts": [...]}` (OpenRLHF's
`openrlhf/cli/serve_rm.py`: each query is the prompt followed by the response, `prompts`
the prompts alone; `labels` is accepted and ignored) and answers
`{"rewards": [...], "scores": [...], "extra_logs": {...}}`: per query the conservative
reward `mean_k r_k - lambda * std_k r_k` over the ensemble's members (the reward PPO
against `--reward ENSEMBLE` uses), with the members' mean and std in `extra_logs`.
A query that starts with its prompt is split there; one that does not is scored as a
response to its prompt; without `prompts` a query is a response to an empty prompt.
`GET /health` says which ensemble answers.

The ensemble is read from its artifact folder once (the store is opened only to find the
latest version, then closed): a PPO run in OpenRLHF or verl scores against it while
prefloop keeps labelling, and a restart after `prefloop score` serves the new version.
Texts are embedded with the artifact's encoder; nothing is cached in the store.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data.errors import ConfigError
from data.http_service import JSONHandler, ThreadedHTTPService
from labeling.encoder import EncoderConfig
from labeling.ensemble import RewardEnsemble
from labeling.features import response_features

log = logging.getLogger("prefloop.labeling")
MAX_BODY = 64 << 20


@dataclass(frozen=True)
class RewardServerConfig:
    """Options of `prefloop serve-reward`."""

    host: str = field(
        default="127.0.0.1",
        metadata={"help": "Interface to listen on; 0.0.0.0 serves other machines (a PPO cluster)."},
    )
    port: int = field(default=5000, metadata={"help": "TCP port (OpenRLHF's serve_rm default)."})
    conservative_lambda: float = field(
        default=1.0,
        metadata={"help": "Reward = mean - LAMBDA * std of the ensemble members' rewards."},
    )
    batch_size: int = field(default=64, metadata={"help": "Texts per encoder forward pass."})

    def __post_init__(self) -> None:
        if self.conservative_lambda < 0:
            raise ConfigError(f"--lambda must be >= 0 (got {self.conservative_lambda})")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"--port {self.port} is not a port number")


class EnsembleScorer:
    """Rewards of (prompt, response) texts from one ensemble artifact."""

    def __init__(self, folder: str | Path, conservative_lambda: float = 1.0, batch_size: int = 64):
        self.folder = str(folder)
        self.ensemble = RewardEnsemble.load(folder)
        meta = self.ensemble.meta
        self.features = tuple(meta["features"])
        self.encoder_config = EncoderConfig(
            name=meta["encoder"],
            max_length=int(meta.get("max_length", 256)),
            normalize=bool(meta.get("normalize", True)),
            batch_size=batch_size,
            progress=False,
        )
        self.conservative_lambda = conservative_lambda
        self._encoder: list[Any] = []
        self._lock = threading.Lock()  # one forward pass at a time

    def _get_encoder(self) -> Any:
        if not self._encoder:
            from labeling.encoder import Encoder

            self._encoder.append(Encoder(self.encoder_config))
        return self._encoder[0]

    def member_rewards(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """[K, N] every member's reward."""
        if not prompts:
            return np.zeros((self.ensemble.members, 0), dtype=np.float32)
        with self._lock:
            x, _ = response_features(
                None,
                prompts,
                responses,
                self.features,
                config=self.encoder_config,
                encoder=self._get_encoder() if self._needs_encoder() else None,
            )
        return self.ensemble.rewards(x)

    def _needs_encoder(self) -> bool:
        return any(f != "length" for f in self.features)

    def score(self, prompts: list[str], responses: list[str]) -> dict[str, list[float]]:
        r = self.member_rewards(prompts, responses)
        mean, std = r.mean(axis=0), r.std(axis=0)
        return {
            "reward": (mean - self.conservative_lambda * std).tolist(),
            "mean": mean.tolist(),
            "std": std.tolist(),
        }


def split_queries(queries: list[str], prompts: list[str] | None) -> tuple[list[str], list[str]]:
    """(prompts, responses) from OpenRLHF's queries (prompt + response) and prompts."""
    if prompts is None:
        return [""] * len(queries), list(queries)
    if len(prompts) != len(queries):
        raise ConfigError(
            f"'prompts' has {len(prompts)} items and 'query' {len(queries)}: send one prompt "
            "per query"
        )
    responses = [
        q[len(p) :] if q.startswith(p) else q for q, p in zip(queries, prompts, strict=True)
    ]
    return [p.strip() for p in prompts], [r.strip() for r in responses]


def answer(scorer: EnsembleScorer, body: Any) -> dict[str, Any]:
    """The JSON answer to one `/get_reward` body; `ConfigError` for a malformed one."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), list):
        raise ConfigError('the body must be {"query": [TEXT, ...], "prompts": [TEXT, ...]}')
    queries, prompts = body["query"], body.get("prompts")
    if not all(isinstance(q, str) for q in queries) or (
        prompts is not None
        and (not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts))
    ):
        raise ConfigError("'query' and 'prompts' must be lists of strings")
    scored = scorer.score(*split_queries(queries, prompts))
    return {
        "rewards": scored["reward"],
        "scores": scored["reward"],
        "extra_logs": {"ensemble_mean": scored["mean"], "ensemble_std": scored["std"]},
    }


class RewardServer(ThreadedHTTPService):
    """A threaded HTTP server for one scorer; a context manager (`url` once started)."""

    def __init__(self, scorer: EnsembleScorer, config: RewardServerConfig | None = None):
        self.config = config or RewardServerConfig()
        super().__init__(_Handler, self.config.host, self.config.port)
        self.scorer = scorer
        self._httpd.scorer = scorer  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/get_reward"

    def stop_listening(self) -> None:
        """Close the socket (after `serve_forever` returned in this thread)."""
        self._httpd.server_close()


class _Handler(JSONHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("reward server: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        scorer: EnsembleScorer = self.server.scorer  # type: ignore[attr-defined]
        if self.path.rstrip("/") == "/health":
            self.send_json(200, {"ok": True, "ensemble": scorer.folder, "members": scorer.ensemble.members,
                             "lambda": scorer.conservative_lambda})  # fmt: skip
        else:
            self.send_json(404, {"error": f"no route {self.path}; POST /get_reward"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        scorer: EnsembleScorer = self.server.scorer  # type: ignore[attr-defined]
        if self.path.split("?", 1)[0].rstrip("/") != "/get_reward":
            self.send_json(404, {"error": f"no route {self.path}; POST /get_reward"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_json(413, {"error": f"body over {MAX_BODY} bytes; send smaller batches"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"null")
            self.send_json(200, answer(scorer, body))
        except (json.JSONDecodeError, ConfigError) as exc:
            self.send_json(400, {"error": str(exc)})
        except Exception as exc:  # one bad batch must not stop the server
            log.exception("reward server: scoring failed")
            self.send_json(500, {"error": f"{type(exc).__name__}: {exc}"})
