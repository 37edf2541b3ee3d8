"""A loopback endpoint that hands a trainer process the judge's pairwise rewards.

A GRPO or RLOO run is a subprocess that never opens the store, and `training` does not
import `judges`; the process that owns the store (`prefloop loop`) serves

    POST <url>   {"items": [{"prompt": ..., "completion": ..., "reference": ...}, ...]}
              -> {"rewards": [0.8, ...]}

on 127.0.0.1 at a path with a random part (the URL is the capability; it lives as long as
the owner serves it), and passes the URL to the run as its reward (`judge:<url>`). Rewards
come from `judges.pairwise_reward`, through the judge cache in the store. The judge's API
key stays in the owner: the trainer sees only the loopback URL.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from typing import Any

from data.http_service import JSONHandler, ThreadedHTTPService
from judges.pairwise_reward import PairwiseJudgeReward, RewardItem

log = logging.getLogger(__name__)
MAX_BODY = 64 << 20  # a batch of completions is far smaller


class RewardServer(ThreadedHTTPService):
    """Serves one `PairwiseJudgeReward` on 127.0.0.1 (a context manager)."""

    def __init__(self, reward: PairwiseJudgeReward):
        super().__init__(_Handler)
        self.reward = reward
        self.path = f"/reward/{secrets.token_urlsafe(16)}"
        self._lock = threading.Lock()  # one batch of rewards at a time: the judge bounds calls

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def spec(self) -> str:
        """What a run takes as its reward: `judge:<url>`."""
        return f"judge:{self.url}"

    def rewards(self, body: dict[str, Any]) -> list[float]:
        items = [
            RewardItem(str(i["prompt"]), str(i["completion"]), str(i.get("reference") or ""))
            for i in body["items"]
        ]
        with self._lock:
            return self.reward(items)


class _Handler(JSONHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug(format, *args)

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        owner: RewardServer = self.server.owner  # type: ignore[attr-defined]
        if self.path != owner.path:
            self.send_json(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_json(413, {"error": "body too large"})
            return
        try:
            body = json.loads(self.rfile.read(length))
            self.send_json(200, {"rewards": owner.rewards(body)})
        except (KeyError, TypeError, ValueError) as exc:
            self.send_json(400, {"error": f"bad request: {exc}"})
        except Exception as exc:  # noqa: BLE001 - the trainer shows it in its log
            log.exception("judge reward failed")
            self.send_json(500, {"error": f"{type(exc).__name__}: {exc}"})
