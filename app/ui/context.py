"""What every handler shares: the store, who may do what, the annotator queue, background work."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

from app.ui.annotate import AnnotateConfig, Annotator
from app.ui.auth import Access
from app.ui.jobs import Background
from data.store import PreferenceStore

DEFAULT_GUIDELINES = """\
**Which response is better for the user?** Judge helpfulness first, then honesty and harmlessness.

- **A better / B better** (keys **1** / **2**): one response is clearly more useful, correct or safe.
- **Tie** (**3**): both are about equally good.
- **Both bad** (**4**): neither is acceptable (wrong, harmful, off-topic, empty).
- **Skip** (**s**): you cannot judge this one; it goes back to the queue for someone else.
- **Undo** (**u**): take back your last label and see that pair again.

Ignore length and style unless they change how useful the answer is. Code: would it run and do
what was asked? You never see other people's labels or the model's scores: judge on your own.
"""


@dataclass
class AppContext:
    store: PreferenceStore
    access: Access
    annotator: Annotator
    guidelines: str = DEFAULT_GUIDELINES
    judge_task: Background | None = None
    rescore_task: Background | None = None
    jobs: Any = None  # training.jobs.JobManager, made on first use
    watcher: Any = None  # app.ui.jobs.RunWatcher
    rescore_budget: int = 50  # human-queue pairs added by the re-score after a run
    train_overrides: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # stage -> TrainRequest fields
    runs_root: str | None = None

    @classmethod
    def create(
        cls, store: PreferenceStore, access: Access, config: AnnotateConfig | None = None
    ) -> AppContext:
        guidelines = store.get_meta("guidelines") or DEFAULT_GUIDELINES
        return cls(store, access, Annotator(store, config), guidelines)

    def user(self, request: Any, role: str = "annotator") -> str:
        """The caller's name if their role allows `role` (raises AccessDenied otherwise)."""
        username = getattr(request, "username", None) if request is not None else None
        return self.access.require(username, role)

    def job_manager(self) -> Any:
        """The store's training JobManager (raises MissingPiece without training.jobs)."""
        from app.ui.jobs import training_jobs

        with _LOCK:
            if self.jobs is None:
                module = training_jobs()
                self.jobs = module.JobManager(self.store, self.runs_root, background=True)
            return self.jobs

    def start_background(self) -> None:
        """Adopt runs left by a previous server and re-score when runs end."""
        from app.ui.jobs import MissingPiece, RunWatcher

        with contextlib.suppress(MissingPiece):  # no training.jobs here: the Train tab says so
            self.job_manager()
        if self.watcher is None:
            self.watcher = RunWatcher(self)

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        if self.jobs is not None:
            self.jobs.close()


_LOCK = threading.Lock()
