"""One tracked run: `run` trains a configuration with a `Trainer`, handles SIGTERM / SIGINT, resumes from a
checkpoint, and logs the run schema (`run_tags`), the final metrics, the accuracy matrix, plots and
result.json to the tracker, marking the run FINISHED, KILLED or FAILED.
"""

from __future__ import annotations

import platform
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import cromo_bench
from cromo_bench import checkpoint as ckpt
from cromo_bench.config import RunConfig
from cromo_bench.data import ImageData, load_dataset
from cromo_bench.errors import CromoError
from cromo_bench.tracking import TAG_PREFIX, Tracker
from cromo_bench.train import Interrupted, NonFiniteLoss, Trainer, run_name


@dataclass
class RunResult:
    run_id: str
    metrics: dict[str, float]
    accuracy_matrix: list[list[float | None]]
    result: dict[str, Any] = field(default_factory=dict)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_tags(cfg: RunConfig, device: torch.device, memory: int) -> dict[str, str]:
    """The run schema the leaderboard reads (`cromo.*`), plus provenance."""
    return {
        f"{TAG_PREFIX}method": cfg.method,
        f"{TAG_PREFIX}ssl": cfg.ssl,
        f"{TAG_PREFIX}split": cfg.benchmark,
        f"{TAG_PREFIX}memory": str(memory),
        f"{TAG_PREFIX}seed": str(cfg.seed),
        f"{TAG_PREFIX}benchmark_version": str(cfg.benchmark_version),
        f"{TAG_PREFIX}class_order": "natural" if cfg.class_order_seed is None else f"seed{cfg.class_order_seed}",
        f"{TAG_PREFIX}config_key": ckpt.config_key(cfg),
        f"{TAG_PREFIX}overrides": dict(cfg.extra).get("overrides", ""),
        f"{TAG_PREFIX}git_commit": git_commit(),
        f"{TAG_PREFIX}version": cromo_bench.__version__,
        f"{TAG_PREFIX}torch": torch.__version__,
        f"{TAG_PREFIX}python": platform.python_version(),
        f"{TAG_PREFIX}device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }


def _stop_requested(flag: dict[str, str]) -> Any:
    """The SIGTERM / SIGINT handler: the first signal asks the loop to checkpoint and stop after the current
    step (an evaluation in progress finishes first); a second one stops at once, from the last checkpoint."""

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if flag:
            raise Interrupted(f"received {name} again: stopped at once; the last checkpoint stays, rerun the same "
                              "command with --resume")
        flag["signal"] = name
        print(f"\ncromo-bench: received {name}; saving a checkpoint after this step (an evaluation in progress "
              "finishes first). Send it again to stop at once.", file=sys.stderr, flush=True)

    return handler


def _finish(trainer: Trainer, seconds: float) -> dict[str, Any]:
    """Log the final metrics, the accuracy matrix, plots and result.json; return the result dict."""
    from cromo_bench.metrics import continual_summary

    cfg, tracker, tasks, matrix = trainer.cfg, trainer.tracker, trainer.tasks, trainer.matrix
    final = trainer.evals[-1]
    metrics = {k: v for k, v in {**final["metrics"], **final["knn"]}.items() if v is not None and v == v}
    if len(matrix) == len(tasks):
        metrics.update(continual_summary(matrix))
    metrics["train_seconds"] = seconds
    tracker.log_metrics(metrics, step=len(tasks) - 1)
    # offline bounds and the task-confusion study train one task and evaluate over virtual tasks
    tracker.log_json("accuracy_matrix.json", {"tasks": tasks, "eval_tasks": trainer.eval_tasks, "R": matrix})
    result = {"run_id": tracker.run_id, "config": cfg.to_dict(), "tasks": tasks, "metrics": metrics,
              "accuracy_matrix": matrix, "final": final, "per_task_evaluations": trainer.evals}
    tracker.log_json("result.json", result)
    _log_plots(tracker, matrix)
    return result


def _log_plots(tracker: Tracker, matrix: list[list[float | None]]) -> None:
    try:
        from cromo_bench import plots
    except ImportError:
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("accuracy_matrix.png", plots.plot_accuracy_matrix), ("task_curves.png",
                                                                                plots.plot_task_curves)):
            path = Path(tmp) / name
            fn(matrix, path)
            tracker.log_file(path, "plots")


def run(cfg: RunConfig, tracker: Tracker, *, progress: bool = True, data: ImageData | None = None,
        parent_run_id: str | None = None, resume: bool = False) -> RunResult:
    """Train `cfg.method` with `cfg.ssl` over the tasks of `cfg.benchmark`, evaluate, and log everything.

    With `resume`, continue the latest unfinished run of this configuration from its last checkpoint, in the
    same tracker run."""
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir, cfg.image_size)
    data = data.subset_per_class(cfg.subset_per_class)
    trainer = Trainer(cfg, tracker, data, progress)
    state = ckpt.read_state(trainer.directory) if resume else None
    if state is not None and state.get("status") == "finished":
        raise CromoError(f"this configuration already finished as run {state.get('run_id')}; "
                         "drop --resume to start a new run")
    saved = ckpt.load_checkpoint(trainer.directory) if state is not None else None
    if saved is not None and state is not None:
        if saved.get("run_id") != state.get("run_id"):
            raise CromoError(f"the checkpoint in {trainer.directory} belongs to run {saved.get('run_id')}, not to "
                             f"the unfinished run {state.get('run_id')}; drop --resume to start afresh")
        trainer.restore(saved)
        tracker.start(cfg.benchmark, run_name(cfg), {}, {}, run_id=state["run_id"])
    else:
        ckpt.discard_checkpoint(trainer.directory)
        memory = cfg.memory if trainer.parts.buffer is not None else 0
        tracker.start(cfg.benchmark, run_name(cfg), run_tags(cfg, trainer.device, memory), cfg.flat_params(),
                      parent_run_id=parent_run_id)
    ckpt.write_state(trainer.directory, run_id=tracker.run_id, status="running", config_key=ckpt.config_key(cfg))
    handler = _stop_requested(trainer.stop)
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)} if _main_thread() else {}
    status = "FAILED"
    try:
        trainer.train()
        result = _finish(trainer, trainer.elapsed())
        status = "FINISHED"
        ckpt.write_state(trainer.directory, status="finished")
        return RunResult(tracker.run_id, result["metrics"], trainer.matrix, result)
    except Interrupted:
        status = "KILLED"
        ckpt.write_state(trainer.directory, status="interrupted")
        raise
    except NonFiniteLoss as exc:
        ckpt.write_state(trainer.directory, status="failed", reason=str(exc))
        tracker.set_tags({f"{TAG_PREFIX}failure": str(exc)})
        raise
    except Exception as exc:
        ckpt.write_state(trainer.directory, status="failed", reason=f"{type(exc).__name__}: {exc}")
        tracker.set_tags({f"{TAG_PREFIX}failure": f"{type(exc).__name__}: {exc}"[:5000]})
        raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        trainer.bar.close()
        tracker.end(status)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
