"""The `cromo-bench` command line. Each command parses, looks up, and calls one library function."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from cromo_bench.errors import CromoError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Benchmark suite and leaderboard for continual self-supervised learning.")


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a CromoError into one line on stderr and exit status 2."""
    try:
        yield
    except CromoError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("list")
def list_cmd() -> None:
    """List the registered methods, objectives, benchmarks (splits) and suites."""
    from cromo_bench.registry import KINDS, table

    for kind in KINDS:
        typer.echo(f"{kind}s:")
        for name, entry in sorted(table(kind).items()):
            doc = getattr(entry, "description", None) or entry.__doc__ or sys.modules[entry.__module__].__doc__
            doc = (doc or "").strip().splitlines()[0] if doc else ""
            typer.echo(f"  {name:<24} {doc}")


@app.command()
def run(
    method: Annotated[str, typer.Option(help="continual method, e.g. finetune, er, cassle, cassle_plus, cromo")],
    ssl: Annotated[str, typer.Option(help="SSL objective: corinfomax, barlow, simclr, byol")] = "barlow",
    split: Annotated[str, typer.Option(help="benchmark / split name (see `cromo-bench list`)")] = "digits-5x2",
    seed: Annotated[int, typer.Option(help="seed for initialisation, augmentation and sampling")] = 0,
    class_order_seed: Annotated[str | None, typer.Option(help="class permutation seed; 'natural'")] = None,
    epochs: Annotated[int | None, typer.Option(help="override the epochs of every task")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    data_dir: Annotated[str | None, typer.Option(help="folder holding (or receiving) the dataset")] = None,
    probe: Annotated[str | None, typer.Option(help="linear probe protocol: fast | paper")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow store (default sqlite:///mlflow.db)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="config override key=value (repeat)")] = None,
    preset: Annotated[str | None, typer.Option(help="quirk preset: reference | clean")] = None,
    resume: Annotated[bool, typer.Option(help="continue this configuration's unfinished run")] = False,
    deterministic: Annotated[bool, typer.Option(help="deterministic algorithms (GPU)")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the encoders (full batches)")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Train one method with one objective on one split, evaluate it, and log it to MLflow."""
    from cromo_bench.experiment import build_config, run_tracked
    from cromo_bench.tracking import tracking_uri as resolve_uri

    with user_errors():
        flags: dict[str, object] = {"seed": seed, "device": device, "data_dir": data_dir, "probe_mode": probe,
                                    "deterministic": deterministic or None, "compile": compile_ or None}
        if epochs is not None:
            flags |= {"epochs_first": epochs, "epochs_later": epochs}
        if class_order_seed is not None:
            flags["class_order_seed"] = None if class_order_seed == "natural" else class_order_seed
        cfg = build_config(method, ssl, split, flags=flags, sets=set_, preset=preset)
        result = run_tracked(cfg, tracking_uri, progress=not quiet, resume=resume)
        m = result.metrics
        typer.echo(f"{cfg.method} + {cfg.ssl} on {cfg.benchmark} (seed {cfg.seed}): "
                   f"LA {m['LA']:.4f}  TP {m['TP']:.4f}  WP {m['WP']:.4f}  WP_oracle {m['WP_oracle']:.4f}")
        typer.echo(f"logged run {result.run_id} to {resolve_uri(tracking_uri)} (experiment '{cfg.benchmark}')")


@app.command()
def perf(
    method: Annotated[str, typer.Option(help="continual method")] = "cromo",
    ssl: Annotated[str, typer.Option(help="SSL objective")] = "barlow",
    split: Annotated[str, typer.Option(help="benchmark whose shapes and schedule are used")] = "cifar100-10x10",
    steps: Annotated[int, typer.Option(help="timed steps per repeat")] = 10,
    repeats: Annotated[int, typer.Option(help="interleaved repeats; medians are reported")] = 5,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the encoders")] = False,
    ref_workers: Annotated[int, typer.Option(help="DataLoader workers of the reference-style pipeline")] = 0,
    set_: Annotated[list[str] | None, typer.Option("--set", help="config override key=value (repeat)")] = None,
) -> None:
    """Time the real training step on synthetic data: throughput, overhead over the compute floor, speed-up
    over a reference-style pipeline, augmentation alone, FLOPs, and the benchmark's estimated training time."""
    from cromo_bench.experiment import build_config
    from cromo_bench.perf import measure

    with user_errors():
        cfg = build_config(method, ssl, split, flags={"device": device, "compile": compile_ or None}, sets=set_)
        typer.echo(measure(cfg, steps=steps, repeats=repeats, ref_workers=ref_workers).render())


@app.command()
def table(
    split: Annotated[str | None, typer.Option(help="only runs of this split")] = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment (default: all)")] = None,
    method: Annotated[list[str] | None, typer.Option(help="keep this method (repeat)")] = None,
    ssl: Annotated[list[str] | None, typer.Option(help="keep this SSL objective (repeat)")] = None,
    memory: Annotated[list[str] | None, typer.Option(help="keep this memory budget (repeat)")] = None,
    metric: Annotated[list[str] | None, typer.Option(help="metric (repeat; default LA TP WP)")] = None,
    baseline: Annotated[str, typer.Option(help="method every other one is tested against")] = "finetune",
    test: Annotated[str, typer.Option(help="auto | paired | welch | wilcoxon")] = "auto",
    alpha: Annotated[float, typer.Option(help="significance level")] = 0.05,
    correction: Annotated[str, typer.Option(help="holm | none")] = "holm",
    bootstrap: Annotated[bool, typer.Option(help="add 95% bootstrap CIs of the mean")] = False,
    fmt: Annotated[str, typer.Option("--format", help="terminal|markdown|latex|csv|html")] = "terminal",
    output: Annotated[str | None, typer.Option(help="write the table to this file")] = None,
    plot: Annotated[str | None, typer.Option(help="also write a grouped bar chart (PNG)")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow store (default ./mlflow.db)")] = None,
) -> None:
    """Aggregate finished runs over seeds: mean ± std, n, and significance marks (the leaderboard)."""
    from cromo_bench.leaderboard import DEFAULT_METRICS, render_table

    with user_errors():
        text = render_table(tracking_uri, experiment, split, method or (), ssl or (), memory or (),
                            metric or DEFAULT_METRICS, baseline, test, alpha, correction, bootstrap, fmt,
                            output, plot)
        typer.echo(f"wrote {output}" if output else text.rstrip("\n"))
        if plot:
            typer.echo(f"wrote {plot}")


@app.command()
def ui(
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow store (default ./mlflow.db)")] = None,
    host: Annotated[str, typer.Option(help="address to bind (0.0.0.0: the network)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to serve on")] = 5000,
) -> None:
    """Browse runs, curves and plots in the MLflow UI (`mlflow ui` on the tracking store)."""
    from cromo_bench.leaderboard import start_ui

    with user_errors():
        code = start_ui(tracking_uri, host, port)
    raise typer.Exit(code)


@app.command()
def sweep(
    suite: Annotated[str | None, typer.Option(help="named suite; the options below replace its axes")] = None,
    method: Annotated[list[str] | None, typer.Option(help="method (repeat)")] = None,
    ssl: Annotated[list[str] | None, typer.Option(help="objective (repeat; default barlow)")] = None,
    split: Annotated[list[str] | None, typer.Option(help="benchmark (repeat; default digits-5x2)")] = None,
    seed: Annotated[list[int] | None, typer.Option(help="seed (repeat; default: the spec's)")] = None,
    memory: Annotated[list[int] | None, typer.Option(help="buffer budget per task (repeat)")] = None,
    class_order_seed: Annotated[list[str] | None, typer.Option(help="class order seed or 'natural'")] = None,
    epochs: Annotated[int | None, typer.Option(help="override the epochs of every task")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override key=value (repeat)")] = None,
    device: str = "auto", data_dir: str | None = None, tracking_uri: str | None = None,
    launcher: Annotated[str, typer.Option(help="local | slurm | debug (| submitit-local)")] = "local",
    jobs: Annotated[int, typer.Option(help="parallel workers (slurm: array parallelism)")] = 1,
    partition: str | None = None, gpus: int = 1, time: str = "24:00:00", mem: str = "32G", cpus: int = 8,
) -> None:
    """Run a grid of cells (skipping FINISHED ones) as child runs of one parent run per split."""
    from cromo_bench import sweep as sw
    from cromo_bench.launchers import Slurm

    with user_errors():
        cells = sw.cells_for(suite, methods=method or (), objectives=ssl or (), splits=split or (), seeds=seed
                             or (), memories=memory or (), class_order_seeds=class_order_seed or ())
        summary = sw.run_sweep(cells, sw.Options(tuple(set_ or ()), epochs, device, data_dir),
                               tracking_uri=tracking_uri, launcher=launcher, jobs=jobs,
                               slurm=Slurm(partition, gpus, time, mem, cpus), name=suite or "custom")
        typer.echo(summary.report())
    raise typer.Exit(1 if summary.failed else 0)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="the run id (see `cromo-bench ui` or a sweep's summary)")],
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow store (default ./mlflow.db)")] = None,
) -> None:
    """Everything about one run: tags, config, final results and the accuracy matrix."""
    from cromo_bench.show import show_run

    with user_errors():
        typer.echo(show_run(run_id, tracking_uri))


def main() -> None:
    try:
        app()
    except CromoError as exc:  # raised outside a command body
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
