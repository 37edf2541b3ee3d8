"""What every handler shares: the store, who may do what, the annotator queue, background work."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from app.ui.annotate import AnnotateConfig, AnnotationService
from app.ui.auth import Access
from app.ui.background import Background
from data.project import DEFAULT_GUIDELINES, ProjectSettings, read_project, write_project
from data.store import PreferenceStore

__all__ = ["DEFAULT_GUIDELINES", "AppContext"]


@dataclass
class AppContext:
    store: PreferenceStore
    access: Access
    annotator: AnnotationService
    project: ProjectSettings = field(default_factory=ProjectSettings)  # as stored (meta)
    judge_task: Background | None = None
    rescore_task: Background | None = None
    jobs: Any = None  # training.jobs.JobManager, made on first use
    watcher: Any = None  # app.ui.train_jobs.RunWatcher
    rescore_budget: int = 50  # human-queue pairs added by the re-score after a run
    train_overrides: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # stage -> TrainRequest fields
    runs_root: str | None = None
    loop: Any = None  # app.ui.loop_jobs.LoopController, the Loop tab's loop

    @classmethod
    def create(
        cls, store: PreferenceStore, access: Access, config: AnnotateConfig | None = None
    ) -> AppContext:
        """The context for one store; without `config` the lease is the project's setting."""
        project = read_project(store)
        config = config or AnnotateConfig(lease_seconds=project.lease_seconds)
        return cls(store, access, AnnotationService(store, config), project)

    @property
    def guidelines(self) -> str:
        """The Markdown guidelines annotators see now."""
        return self.project.shown_guidelines

    def save_project(self, settings: ProjectSettings) -> ProjectSettings:
        """Store new project settings and apply them to the running app (the lease at once;
        guidelines and strength buttons on each annotator's next page load)."""
        saved = write_project(self.store, settings)
        if saved.lease_seconds != self.project.lease_seconds:
            self.annotator.set_lease_seconds(saved.lease_seconds)
        self.project = saved
        return saved

    def user(self, request: Any, role: str = "annotator") -> str:
        """The caller's name if their role allows `role` (raises AccessDenied otherwise)."""
        username = getattr(request, "username", None) if request is not None else None
        return self.access.require(username, role)

    def job_manager(self) -> Any:
        """The store's training JobManager (runs are subprocesses; made on first use)."""
        from training.jobs import JobManager

        with _LOCK:
            if self.jobs is None:
                self.jobs = JobManager.shared(self.store, self.runs_root, background=True)
            return self.jobs

    def start_background(self) -> None:
        """Adopt runs left by a previous server and re-score when runs end."""
        from app.ui.train_jobs import RunWatcher

        self.job_manager()
        if self.watcher is None:
            self.watcher = RunWatcher(self)

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        if self.jobs is not None:
            self.jobs.close()


_LOCK = threading.Lock()
