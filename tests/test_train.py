"""The continual loop end to end on tiny digits runs, parametrized over the registry."""

from __future__ import annotations

import time

import pytest
import torch

from cromo_bench.config import parse_overrides
from cromo_bench.data import load_digits
from cromo_bench.experiment import build_config
from cromo_bench.registry import names
from cromo_bench.runner import run
from cromo_bench.tracking import MemoryTracker
from cromo_bench.train import NonFiniteLoss
from tests.helpers import TINY_SETS

DIGITS = load_digits(16)


def tiny_config(method: str, ssl: str, **values):
    sets = TINY_SETS + ["task_sizes=5,5", "run_dir=" + str(values.pop("run_dir", "runs"))]
    sets += [f"{k}={v}" for k, v in values.items()]
    return build_config(method, ssl, "digits-5x2", flags={"epochs_first": 1, "epochs_later": 1}, sets=sets)


@pytest.mark.parametrize("ssl", names("objective"))
@pytest.mark.parametrize("method", names("method"))
def test_every_method_and_objective_trains_evaluates_and_logs(method, ssl, tmp_path):
    if ssl == "supervised" and method != "finetune":
        pytest.skip("the supervised reference is only used with finetune")
    cfg = tiny_config(method, ssl, run_dir=tmp_path)
    tracker = MemoryTracker()
    result = run(cfg, tracker, progress=False, data=DIGITS)
    m = result.metrics
    for key in ("LA", "TP", "WP", "WP_oracle"):
        assert 0.0 <= m[key] <= 1.0
    assert m["LA"] == pytest.approx(m["TP"] * m["WP"], abs=1e-6)
    assert tracker.status == "FINISHED"
    assert tracker.tags["cromo.method"] == method and tracker.tags["cromo.ssl"] == ssl
    assert "loss_ssl" in {k for k, _, _ in tracker.metrics}
    assert len(result.accuracy_matrix) == 2 and result.accuracy_matrix[0][1] is None
    assert "result.json" in tracker.artifacts


def test_same_seed_gives_identical_metrics(tmp_path):
    a = run(tiny_config("finetune", "barlow", run_dir=tmp_path / "a"), MemoryTracker(), progress=False,
            data=DIGITS)
    b = run(tiny_config("finetune", "barlow", run_dir=tmp_path / "b"), MemoryTracker(), progress=False,
            data=DIGITS)
    assert {k: a.metrics[k] for k in ("LA", "TP", "WP")} == {k: b.metrics[k] for k in ("LA", "TP", "WP")}
    assert a.accuracy_matrix == b.accuracy_matrix
    assert a.metrics["knn_acc"] == b.metrics["knn_acc"]


def test_non_finite_loss_fails_the_run_with_the_term_task_and_step(tmp_path, monkeypatch):
    from cromo_bench.objectives.barlow import BarlowTwins

    calls = {"n": 0}
    original = BarlowTwins.pair_loss

    def poisoned(self, a, b):
        calls["n"] += 1
        out = original(self, a, b)
        return out * float("nan") if calls["n"] == 5 else out

    monkeypatch.setattr(BarlowTwins, "pair_loss", poisoned)
    tracker = MemoryTracker()
    with pytest.raises(NonFiniteLoss, match=r"loss term 'ssl' became non-finite at task 1, step 4"):
        run(tiny_config("finetune", "barlow", run_dir=tmp_path), tracker, progress=False, data=DIGITS)
    assert tracker.status == "FAILED"
    assert "non-finite" in tracker.tags["cromo.failure"]


def test_overrides_reach_the_model(tmp_path):
    cfg = tiny_config("finetune", "barlow", run_dir=tmp_path, width=8)
    assert cfg.width == 8 and parse_overrides(["width=8"]) == {"width": 8}
    from cromo_bench.models import build_backbone

    net, dim = build_backbone(cfg)
    assert dim == 64 and net(torch.zeros(2, 3, 16, 16)).shape == (2, 64)


class _Crash(Exception):
    """Stands for a process killed right after a checkpoint."""


def _crash_after_end_of_task(monkeypatch, task: int) -> None:
    from cromo_bench.train import Trainer

    original = Trainer.end_task

    def end_task(self, t):
        original(self, t)
        if t == task:
            raise _Crash

    monkeypatch.setattr(Trainer, "end_task", end_task)


@pytest.mark.parametrize("ssl", ["corinfomax", "byol"])  # per-task objective state: covariances, EMA schedule
def test_resume_at_a_task_boundary_equals_an_uninterrupted_run(ssl, tmp_path, monkeypatch):
    sets = {"task_sizes": "4,3,3", "ema_schedule": "task"}
    straight = run(tiny_config("cassle", ssl, run_dir=tmp_path / "a", **sets), MemoryTracker(), progress=False,
                   data=DIGITS)
    cfg = tiny_config("cassle", ssl, run_dir=tmp_path / "b", **sets)
    with monkeypatch.context() as m:
        _crash_after_end_of_task(m, task=0)
        with pytest.raises(_Crash):
            run(cfg, MemoryTracker(run_id="b"), progress=False, data=DIGITS)
    resumed = run(cfg, MemoryTracker(), progress=False, data=DIGITS, resume=True)
    assert resumed.run_id == "b"
    assert resumed.accuracy_matrix == straight.accuracy_matrix
    assert resumed.metrics["LA"] == straight.metrics["LA"]


def test_train_seconds_add_up_over_resumed_attempts(tmp_path, monkeypatch):
    """The first attempt runs on a clock that moves 100 s per reading; the resumed run's `train_seconds`
    includes that attempt's checkpointed time, not only its own few seconds."""
    import itertools
    import types

    cfg = tiny_config("finetune", "barlow", run_dir=tmp_path, task_sizes="4,3,3")
    ticks = itertools.count()
    with monkeypatch.context() as m:
        m.setattr("cromo_bench.train.time", types.SimpleNamespace(time=lambda: 100.0 * next(ticks)))
        _crash_after_end_of_task(m, task=0)
        with pytest.raises(_Crash):
            run(cfg, MemoryTracker(run_id="a"), progress=False, data=DIGITS)
    saved = torch.load(next(tmp_path.glob("*/checkpoint.pt")), weights_only=True)["seconds"]
    assert saved >= 100
    started = time.time()
    resumed = run(cfg, MemoryTracker(), progress=False, data=DIGITS, resume=True)
    own = time.time() - started
    assert saved <= resumed.metrics["train_seconds"] <= saved + own


def test_a_fresh_run_never_resumes_an_older_runs_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_config("finetune", "barlow", run_dir=tmp_path)
    run(cfg, MemoryTracker(run_id="old"), progress=False, data=DIGITS)
    with monkeypatch.context() as m:
        from cromo_bench.train import Trainer

        m.setattr(Trainer, "end_task", lambda self, t: (_ for _ in ()).throw(_Crash()))
        with pytest.raises(_Crash):  # killed in task 1, before its first checkpoint
            run(cfg, MemoryTracker(run_id="new"), progress=False, data=DIGITS)
    tracker = MemoryTracker(run_id="newer")
    result = run(cfg, tracker, progress=False, data=DIGITS, resume=True)
    assert result.run_id == "newer"  # nothing to resume: a new run, not "old"'s results relabelled
    assert any(k == "loss_ssl" for k, _, _ in tracker.metrics)


def test_evaluation_settings_do_not_change_training(tmp_path):
    a = run(tiny_config("finetune", "barlow", run_dir=tmp_path / "a", probe_epochs=10), MemoryTracker(),
            progress=False, data=DIGITS)
    b = run(tiny_config("finetune", "barlow", run_dir=tmp_path / "b", probe_epochs=3), MemoryTracker(),
            progress=False, data=DIGITS)
    assert a.metrics["knn_acc"] == b.metrics["knn_acc"]  # kNN reads the encoder alone: same training


def test_one_signal_lets_the_evaluation_finish_and_a_second_stops_at_once(tmp_path, monkeypatch, capsys):
    """Ctrl-C during the final probe: the first signal is noted (the probe goes on, a message says how to stop now);
    the second stops the run at once, marked interrupted, and --resume finishes it in the same run."""
    import os
    import signal

    import cromo_bench.evaluate as evaluate
    from cromo_bench import checkpoint as ckpt
    from cromo_bench.train import Interrupted, Trainer

    cfg = tiny_config("finetune", "barlow", run_dir=tmp_path)
    original, calls = evaluate.evaluate_after_task, []

    def probe(*args, **kwargs):
        calls.append("probe")
        if len(calls) == 2:  # the final probe, after task 1's checkpoint
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the handler runs here and returns: the probe continues
            calls.append("continued after the first signal")
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises here
            calls.append("not reached")
        return original(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(evaluate, "evaluate_after_task", probe)
        with pytest.raises(Interrupted, match="again: stopped at once"):
            run(cfg, MemoryTracker(run_id="x"), progress=False, data=DIGITS)
    assert calls == ["probe", "probe", "continued after the first signal"]
    assert "Send it again to stop at once" in capsys.readouterr().err
    directory = Trainer(cfg, MemoryTracker(), DIGITS, progress=False).directory
    assert ckpt.read_state(directory)["status"] == "interrupted"
    resumed = run(cfg, MemoryTracker(), progress=False, data=DIGITS, resume=True)
    assert resumed.run_id == "x" and 0 <= resumed.metrics["LA"] <= 1
