"""The `cromo-bench` command line. Each command parses, looks up, and calls one library function."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Optional

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
    class_order_seed: Annotated[Optional[str], typer.Option(help="class permutation seed; 'natural'")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="override the epochs of every task")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    data_dir: Annotated[Optional[str], typer.Option(help="folder holding (or receiving) the dataset")] = None,
    probe: Annotated[Optional[str], typer.Option(help="linear probe protocol: fast | paper")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow store (default sqlite:///mlflow.db)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="config override key=value (repeat)")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Train one method with one objective on one split, evaluate it, and log it to MLflow."""
    from cromo_bench.experiment import build_config, run_tracked
    from cromo_bench.tracking import tracking_uri as resolve_uri

    with user_errors():
        flags: dict[str, object] = {"seed": seed, "device": device, "data_dir": data_dir, "probe_mode": probe}
        if epochs is not None:
            flags |= {"epochs_first": epochs, "epochs_later": epochs}
        if class_order_seed is not None:
            flags["class_order_seed"] = None if class_order_seed == "natural" else class_order_seed
        cfg = build_config(method, ssl, split, flags=flags, sets=set_)
        result = run_tracked(cfg, tracking_uri, progress=not quiet)
        m = result.metrics
        typer.echo(f"{cfg.method} + {cfg.ssl} on {cfg.benchmark} (seed {cfg.seed}): "
                   f"LA {m['LA']:.4f}  TP {m['TP']:.4f}  WP {m['WP']:.4f}  WP_oracle {m['WP_oracle']:.4f}")
        typer.echo(f"logged run {result.run_id} to {resolve_uri(tracking_uri)} (experiment '{cfg.benchmark}')")


def main() -> None:
    try:
        app()
    except CromoError as exc:  # raised outside a command body
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
