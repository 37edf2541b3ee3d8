"""A small dependency scheduler with resources: the engine under `prefloop loop`.

A plan is a list of `Task`s. A task starts once every task it depends on has finished
and its resource has a free slot (`capacities`: e.g. one trainer, one generator, one CPU
fit); tasks without a resource only wait for their dependencies. With `overlap` the
ready tasks run at the same time on threads (a task that runs a training subprocess
only waits for it in its thread); without it, one task at a time in plan order, which is
the sequential loop a person would run by hand.

Setting `stop` (a task may do it, e.g. on early stop, or another thread, e.g. the Loop
tab) starts no further task; those already running finish. A task that raises stops the
plan the same way, and `run` raises its error once the running tasks have ended; so does an
exception in the caller's thread (Ctrl-C), after setting `stop` for the running tasks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from data.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One unit of work in a plan."""

    key: str  # unique in the plan, e.g. "r2.train"
    fn: Callable[[], Any] = field(compare=False)  # what it does; its return value is kept
    deps: tuple[str, ...] = ()  # keys that must finish first
    resource: str | None = None  # a key of the scheduler's capacities, or None


@dataclass
class PlanResult:
    """What happened to a plan: results of finished tasks, and the tasks never started."""

    results: dict[str, Any] = field(default_factory=dict)
    not_started: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # keys in the order they started
    skipped: list[str] = field(default_factory=list)  # dropped by `skip`


def check_plan(tasks: Sequence[Task], done: Collection[str] = ()) -> None:
    """Raise `ConfigError` for a duplicate key, an unknown dependency or a cycle."""
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        raise ConfigError(f"plan has duplicate task keys {dupes}; give each task its own key")
    known = set(keys) | set(done)
    for task in tasks:
        missing = [d for d in task.deps if d not in known]
        if missing:
            raise ConfigError(f"task {task.key} depends on unknown task(s) {missing}")
    # Kahn's algorithm: every task must become ready
    waiting = {t.key: {d for d in t.deps if d not in done} for t in tasks}
    ready = [k for k, deps in waiting.items() if not deps]
    seen = 0
    while ready:
        key = ready.pop()
        seen += 1
        for other, deps in waiting.items():
            if key in deps:
                deps.discard(key)
                if not deps:
                    ready.append(other)
    if seen != len(tasks):
        stuck = sorted(k for k, deps in waiting.items() if deps)
        raise ConfigError(f"plan has a dependency cycle among {stuck}")


def check_order(tasks: Sequence[Task], done: Collection[str] = ()) -> None:
    """Raise `ConfigError` unless every dependency comes before its task (or is done)."""
    seen = set(done)
    for task in tasks:
        late = [d for d in task.deps if d not in seen]
        if late:
            raise ConfigError(f"task {task.key} comes before its dependencies {late} in the plan")
        seen.add(task.key)


class Scheduler:
    """Runs a plan under resource limits, overlapped or one task at a time."""

    def __init__(
        self,
        capacities: Mapping[str, int],
        *,
        overlap: bool = True,
        stop: threading.Event | None = None,
    ):
        self.capacities = dict(capacities)
        self.overlap = overlap
        self.stop = stop or threading.Event()

    def run(
        self,
        tasks: Sequence[Task],
        done: Collection[str] = (),
        skip: Callable[[Task], bool] | None = None,
    ) -> PlanResult:
        """Run `tasks` (those in `done` count as finished already); see the module docstring.

        `skip(task)`, asked before a task starts, drops it (and so what depends on it):
        the loop's early stop drops the rounds after the one that decided to stop."""
        check_plan(tasks, done)
        for task in tasks:
            if task.resource is not None and task.resource not in self.capacities:
                raise ConfigError(
                    f"task {task.key} needs resource {task.resource!r}; the scheduler has "
                    f"{sorted(self.capacities)}"
                )
        if not self.overlap:
            check_order(tasks, done)
        result = PlanResult()
        finished = set(done)
        pending = [t for t in tasks if t.key not in finished]
        running: dict[str, Task] = {}
        errors: list[BaseException] = []
        cond = threading.Condition()

        def in_use(resource: str) -> int:
            return sum(1 for t in running.values() if t.resource == resource)

        def ready(task: Task) -> bool:
            if not all(d in finished for d in task.deps):
                return False
            return task.resource is None or in_use(task.resource) < self.capacities[task.resource]

        def work(task: Task) -> None:
            try:
                value = task.fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller of run()
                log.exception("loop task %s failed", task.key)
                with cond:
                    errors.append(exc)
                    self.stop.set()
                    running.pop(task.key, None)
                    cond.notify_all()
                return
            with cond:
                result.results[task.key] = value
                finished.add(task.key)
                running.pop(task.key, None)
                cond.notify_all()

        threads: list[threading.Thread] = []
        try:
            with cond:
                while pending and not self.stop.is_set():
                    if skip is not None:
                        for task in [t for t in pending if skip(t)]:
                            pending.remove(task)
                            result.skipped.append(task.key)
                        if not pending:
                            break
                    if self.overlap:
                        startable = [t for t in pending if ready(t)]
                    else:  # plan order, one at a time (check_order made plan order a valid one)
                        startable = [pending[0]] if not running and ready(pending[0]) else []
                    for task in startable:
                        if not ready(task):  # an earlier start may have taken the slot
                            continue
                        pending.remove(task)
                        running[task.key] = task
                        result.order.append(task.key)
                        thread = threading.Thread(
                            target=work, args=(task,), name=f"loop-{task.key}"
                        )
                        threads.append(thread)
                        thread.start()
                    if not startable and not running:
                        break  # nothing can start: only possible when a dependency failed
                    cond.wait(timeout=0.5)
                while running:
                    cond.wait(timeout=0.5)
        except BaseException:  # Ctrl-C in the caller's thread: start nothing more, let
            self.stop.set()  # the running tasks see `stop` (runs are cancelled), then go
            for thread in threads:
                thread.join()
            raise
        for thread in threads:
            thread.join()
        result.not_started = [t.key for t in pending]
        if errors:
            raise errors[0]
        return result
