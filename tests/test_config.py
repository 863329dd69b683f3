"""Config resolution, --set overrides and registry lookups."""

from __future__ import annotations

import dataclasses

import pytest

from cromo_bench.config import RunConfig, parse_overrides
from cromo_bench.errors import CromoError
from cromo_bench.experiment import build_config
from cromo_bench.registry import lookup, names


def test_set_overrides_are_typed():
    out = parse_overrides(["lr=0.5", "epochs_first=3", "detach_current_target=false", "task_sizes=5,5",
                           "class_order_seed=none"])
    assert out == {"lr": 0.5, "epochs_first": 3, "detach_current_target": False, "task_sizes": (5, 5),
                   "class_order_seed": None}


@pytest.mark.parametrize("pair, message", [
    ("lrr=0.1", "unknown config key 'lrr'. Did you mean 'lr'"),
    ("epochs_first=two", "expected int"),
    ("detach_current_target=maybe", "expected bool"),
    ("novalue", "key=value"),
])
def test_bad_overrides_fail_with_one_line(pair, message):
    with pytest.raises(CromoError, match=message) as info:
        parse_overrides([pair])
    assert "\n" not in str(info.value)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().lr = 1.0  # type: ignore[misc]


def test_resolution_order_spec_then_flags_then_set():
    cfg = build_config("finetune", "barlow", "digits-5x2", flags={"seed": 3, "epochs_first": 2},
                       sets=["epochs_first=4", "width=16"])
    assert cfg.seed == 3 and cfg.epochs_first == 4 and cfg.width == 16
    assert cfg.benchmark == "digits-5x2" and cfg.dataset == "digits" and cfg.task_sizes == (2,) * 5
    assert cfg.image_size == 16  # from the spec's defaults


def test_choice_fields_are_validated():
    with pytest.raises(CromoError, match="norm 'xx' is not allowed; choose one of: bn, gn"):
        build_config("finetune", "barlow", "digits-5x2", sets=["norm=xx"])


def test_lookup_suggests_the_closest_name():
    with pytest.raises(CromoError, match="Did you mean 'finetune'") as info:
        lookup("method", "finetun")
    assert "Valid methods: " in str(info.value)
    assert "digits-5x2" in names("benchmark")


@pytest.mark.parametrize("key", ["method", "ssl", "benchmark", "benchmark_version"])
def test_identity_fields_cannot_be_set(key):
    with pytest.raises(CromoError, match=f"--set {key} is not allowed"):
        parse_overrides([f"{key}=x"])


def test_batch_size_below_two_is_rejected():
    with pytest.raises(CromoError, match="batch_size must be at least 2"):
        build_config("finetune", "barlow", "digits-5x2", sets=["batch_size=1"])


def test_settings_that_differ_from_the_benchmark_are_labelled():
    assert dict(build_config("finetune", "barlow", "digits-5x2").extra)["overrides"] == ""
    cfg = build_config("finetune", "barlow", "digits-5x2", flags={"seed": 4, "epochs_first": 1},
                       sets=["lr=0.5"])
    assert dict(cfg.extra)["overrides"] == "epochs_first=1,lr=0.5"  # the seed is an axis, not a setting


def test_config_key_covers_what_changes_the_numbers_and_only_that() -> None:
    """The run directory's key: a setting that changes the numbers changes it; execution settings do not; a field
    left at its default does not enter it (adding a config field keeps the keys of existing runs)."""
    from cromo_bench.checkpoint import config_key, identity_items

    base = dataclasses.replace(RunConfig(), method="cromo", ssl="barlow", benchmark="digits-5x2")
    assert config_key(dataclasses.replace(base, crop_size=32)) != config_key(base)
    assert config_key(dataclasses.replace(base, lr=0.3)) != config_key(base)
    assert config_key(dataclasses.replace(base, device="cuda", num_threads=1, run_dir="elsewhere")) == config_key(base)
    assert "crop_size" not in identity_items(base) and identity_items(dataclasses.replace(base, crop_size=32)) == {
        **identity_items(base), "crop_size": 32}
    assert config_key(dataclasses.replace(base, seed=1)).split("-")[-2] == "s1"
