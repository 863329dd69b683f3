"""Checkpoints and run directories, so a run survives crashes, preemption and Ctrl-C (issue: reliability).

A run directory `<run_dir>/<config key>/` holds `checkpoint.pt` (written atomically; loaded with
`torch.load(weights_only=True)`, so it holds only tensors and plain containers) and `state.json` (the MLflow
run id, the tracking store and the status). The config key hashes every setting that changes the numbers
(those that differ from RunConfig's defaults), so the same `cromo-bench run ...` command with `--resume` finds
its own unfinished run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from cromo_bench.config import RunConfig
from cromo_bench.errors import CromoError

# Fields that do not change what is computed; two runs differing only in these are the same run.
NOT_IDENTITY = ("device", "run_dir", "num_threads", "checkpoint_every", "data_dir", "deterministic", "extra",
                "compile")


_DEFAULTS = RunConfig().to_dict()


def identity_items(cfg: RunConfig) -> dict[str, Any]:
    """The settings that identify a run: every field outside NOT_IDENTITY whose value differs from RunConfig's
    default (so adding a config field with a default keeps the keys of existing runs)."""
    return {k: v for k, v in cfg.to_dict().items() if k not in NOT_IDENTITY and v != _DEFAULTS[k]}


def config_key(cfg: RunConfig) -> str:
    items = identity_items(cfg)
    digest = hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{cfg.method}-{cfg.ssl}-{cfg.benchmark}-s{cfg.seed}-{digest}"


def run_directory(cfg: RunConfig) -> Path:
    return Path(cfg.run_dir) / config_key(cfg)


def read_state(directory: Path) -> dict[str, Any] | None:
    path = directory / "state.json"
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise CromoError(f"corrupt run state '{path}': {exc}; delete the file to start afresh") from exc


def write_state(directory: Path, **values: Any) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    state = read_state(directory) or {}
    state.update(values)
    tmp = directory / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, directory / "state.json")


def save_checkpoint(directory: Path, payload: dict[str, Any]) -> Path:
    """Write atomically: a crash while saving keeps the previous checkpoint intact."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "checkpoint.pt"
    tmp = directory / "checkpoint.pt.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def discard_checkpoint(directory: Path) -> None:
    """A fresh run of this configuration: an older run's checkpoint must never be resumed into it."""
    (directory / "checkpoint.pt").unlink(missing_ok=True)


def load_checkpoint(directory: Path) -> dict[str, Any] | None:
    path = directory / "checkpoint.pt"
    if not path.is_file():
        return None
    try:
        return dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # noqa: BLE001 - torch raises several types for damaged files
        raise CromoError(f"cannot read checkpoint '{path}' ({type(exc).__name__}); delete it to start afresh"
                         ) from exc


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
