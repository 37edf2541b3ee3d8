"""The scheduler on synthetic plans: dependency order, resource limits, overlap or not,
skips, stops and failures (real threads, short sleeps as work)."""

from __future__ import annotations

import threading
import time

import pytest

from app.loop.plan import CAPACITIES, plan_steps
from app.loop.scheduler import Scheduler, Task, check_plan
from data.errors import ConfigError


class Recorder:
    """Tasks that sleep and record their (start, end) interval."""

    def __init__(self) -> None:
        self.intervals: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def task(self, key: str, deps=(), resource=None, seconds: float = 0.05) -> Task:
        def fn() -> str:
            start = time.monotonic()
            time.sleep(seconds)
            with self.lock:
                self.intervals[key] = (start, time.monotonic())
            return key

        return Task(key, fn, tuple(deps), resource)


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_dependencies_finish_before_their_tasks_start() -> None:
    rec = Recorder()
    tasks = [
        rec.task("a"),
        rec.task("b", ["a"]),
        rec.task("c", ["a"]),
        rec.task("d", ["b", "c"]),
        rec.task("e"),
    ]
    result = Scheduler({}, overlap=True).run(tasks)
    assert set(result.results) == {"a", "b", "c", "d", "e"}
    for task in tasks:
        for dep in task.deps:
            assert rec.intervals[dep][1] <= rec.intervals[task.key][0]
    # b and c (both after a) and e (no deps) ran at the same time
    assert overlaps(rec.intervals["b"], rec.intervals["c"])
    assert overlaps(rec.intervals["a"], rec.intervals["e"])


def test_a_resource_of_capacity_one_runs_one_task_at_a_time() -> None:
    rec = Recorder()
    tasks = [rec.task(f"t{i}", resource="trainer") for i in range(4)]
    tasks += [rec.task(f"g{i}", resource="generator") for i in range(2)]
    Scheduler({"trainer": 1, "generator": 1}).run(tasks)
    trains = [rec.intervals[f"t{i}"] for i in range(4)]
    assert not any(overlaps(x, y) for i, x in enumerate(trains) for y in trains[i + 1 :])
    assert overlaps(rec.intervals["t0"], rec.intervals["g0"])  # different resources overlap


def test_no_overlap_runs_the_plan_order_one_task_at_a_time() -> None:
    rec = Recorder()
    tasks = [rec.task("a"), rec.task("e"), rec.task("b", ["a"]), rec.task("c", ["a"])]
    result = Scheduler({}, overlap=False).run(tasks)
    assert result.order == ["a", "e", "b", "c"]
    spans = [rec.intervals[k] for k in result.order]
    assert all(x[1] <= y[0] for x, y in zip(spans, spans[1:], strict=False))


def test_the_loop_plan_overlaps_the_next_rounds_work_with_this_rounds_training() -> None:
    """The real round plan, with sleeps as stages: round 2 generates, scores and judges
    while round 1 trains, and the pipelined plan beats the sequential one."""
    seconds = {"generate": 0.12, "score": 0.04, "judge": 0.04, "route": 0.01, "cutoff": 0.0}
    seconds.update({"reference": 0.04, "train:dpo": 0.2, "rescore": 0.04})

    def run(overlap: bool) -> tuple[Recorder, float]:
        rec = Recorder()
        steps = plan_steps(3, ("dpo",))
        tasks = [rec.task(s.key, s.deps, s.resource, seconds[s.stage]) for s in steps]
        start = time.monotonic()
        Scheduler(CAPACITIES, overlap=overlap).run(tasks)
        return rec, time.monotonic() - start

    piped, piped_s = run(True)
    seq, seq_s = run(False)
    assert overlaps(piped.intervals["r2.generate"], piped.intervals["r1.train:dpo"])
    assert piped.intervals["r2.generate"][0] >= piped.intervals["r1.cutoff"][1]
    assert overlaps(piped.intervals["r2.reference"], piped.intervals["r1.train:dpo"])
    assert overlaps(piped.intervals["r3.generate"], piped.intervals["r2.train:dpo"])
    assert piped.intervals["r3.generate"][0] >= piped.intervals["r1.train:dpo"][1]  # staleness 1
    trains = [piped.intervals[f"r{k}.train:dpo"] for k in (1, 2, 3)]
    assert all(x[1] <= y[0] for x, y in zip(trains, trains[1:], strict=False))
    spans = sorted(seq.intervals.values())
    assert all(x[1] <= y[0] for x, y in zip(spans, spans[1:], strict=False))
    assert piped_s < 0.85 * seq_s


def test_rm_then_policy_training_is_one_chain_per_round() -> None:
    keys = [s.key for s in plan_steps(2, ("rm", "ppo"))]
    steps = {s.key: s for s in plan_steps(2, ("rm", "ppo"))}
    assert keys.index("r1.train:rm") < keys.index("r1.train:ppo") < keys.index("r1.rescore")
    # the PPO run also waits for its first batch, sampled next to the reward model's run
    assert set(steps["r1.train:ppo"].deps) == {"r1.train:rm", "r1.rollouts"}
    assert (
        steps["r1.rollouts"].deps == ("r1.cutoff",) and steps["r1.rollouts"].resource == "generator"
    )
    assert set(steps["r2.rollouts"].deps) == {"r2.cutoff", "r1.train:ppo"}
    assert set(steps["r2.train:rm"].deps) == {"r2.cutoff", "r1.train:ppo"}
    # round 2 samples once round 1's cut-off is recorded (both of its runs train on the labels
    # up to it), so it may go next to round 1's reward model; PPO reads no reference cache
    assert set(steps["r2.generate"].deps) == {"r1.generate", "r1.cutoff"}
    assert "r1.reference" not in steps


def test_a_dpo_round_computes_its_reference_log_probs_next_to_the_last_training() -> None:
    steps = {s.key: s for s in plan_steps(3, ("dpo",))}
    assert steps["r2.reference"].deps == ("r2.generate",)
    assert steps["r2.reference"].resource == "generator"  # the side lane, not the trainer
    assert set(steps["r2.train:dpo"].deps) == {"r2.cutoff", "r1.train:dpo", "r2.reference"}
    assert "r1.train:dpo" not in steps["r2.reference"].deps  # so it may overlap that run


def test_bad_plans_are_refused_with_what_is_wrong() -> None:
    noop = lambda: None  # noqa: E731
    with pytest.raises(ConfigError, match="unknown task"):
        check_plan([Task("a", noop, ("missing",))])
    with pytest.raises(ConfigError, match="cycle"):
        check_plan([Task("a", noop, ("b",)), Task("b", noop, ("a",))])
    with pytest.raises(ConfigError, match="duplicate"):
        check_plan([Task("a", noop), Task("a", noop)])
    with pytest.raises(ConfigError, match="before its dependencies"):
        Scheduler({}, overlap=False).run([Task("b", noop, ("a",)), Task("a", noop)])
    with pytest.raises(ConfigError, match="resource"):
        Scheduler({}).run([Task("a", noop, (), "gpu")])


def test_done_tasks_are_not_run_again_and_skip_drops_tasks() -> None:
    rec = Recorder()
    tasks = [rec.task("a"), rec.task("b", ["a"]), rec.task("c", ["b"]), rec.task("d")]
    result = Scheduler({}).run(tasks, done={"a"}, skip=lambda t: t.key == "c")
    assert set(rec.intervals) == {"b", "d"}
    assert result.skipped == ["c"]


def test_a_failing_task_stops_the_plan_and_raises_after_running_tasks_end() -> None:
    rec = Recorder()

    def boom() -> None:
        raise RuntimeError("stage broke")

    tasks = [Task("bad", boom), rec.task("slow", seconds=0.2), rec.task("after", ["bad"])]
    with pytest.raises(RuntimeError, match="stage broke"):
        Scheduler({}).run(tasks)
    assert "slow" in rec.intervals and "after" not in rec.intervals


def test_a_stop_request_starts_nothing_more() -> None:
    rec = Recorder()
    stop = threading.Event()

    def stopper() -> None:
        stop.set()

    tasks = [Task("stop", stopper), rec.task("later", ["stop"])]
    result = Scheduler({}, stop=stop).run(tasks)
    assert result.not_started == ["later"] and not rec.intervals
