"""Named presets of the reference-code quirks (REFERENCE.md section 14; ARCHITECTURE.md, "Reference quirks
are options"). This docstring is the one place that lists every quirk option, its default and why.

`cromo-bench run --preset NAME` (and `build_config(..., preset=NAME)`) applies `preset_values(NAME, ssl,
method)` above the benchmark spec and below the method's own `defaults`, flags and `--set`:
objective defaults < benchmark < benchmark[ssl] < preset < method defaults < flags < --set.
(Method defaults win so that a variant such as `cromo_nodistill` keeps its identity under any preset.)

A preset holds the reference's *method-level* choices only. Dataset-level reference values (LR / 10 on
later tasks where the README omits `--same_lr`, BYOL's replay batch of 128, BYOL's KD weight 0 on
TinyImageNet, msize, epochs) are written out in the paper benchmark specs (benchmarks/paper.py), so a preset
never overrides a benchmark's sizes, LR or LR factors, and `--preset reference` on a small benchmark (digits,
cifar10-cpu-5x2) changes the method behaviour only. Without a preset a run uses the RunConfig defaults,
refined by the objective's defaults (which carry some reference values, e.g. Barlow's fixed lambda) and by
the benchmark.

Each option: project default -> `reference` value (REFERENCE.md section) -- why the default.
- lambda_mode / mix_lambda / mix_alpha: beta, alpha 1.0 (but Barlow's objective defaults say fixed 0.7)
  -> Barlow fixed 0.7, the others Beta(1, 1) = U(0, 1) (14.1) -- one rule for every objective; the paper's
  rule is unconfirmed (17.3).
- cromo_loss: native (each objective's own loss) -> bt for CorInfoMax (Barlow Twins on L2-normalised
  embeddings), native for the others (14.2) -- the CroMo term should use the objective under study.
- detach_current_target: true -> false (14.4) -- the current-model embedding is a target; letting the CroMo
  term move it is a side effect, not the method.
- old_model_bn: train -> train (14.5) -- CaSSLe and the reference both keep the frozen model's BatchNorm on
  batch statistics; eval is the option.
- buffer_policy: per_task -> per_task, growing by `memory` per task (14.14) -- the reference's budget
  semantics; fixed_total is the option for equal-total-budget studies.
- buffer_replacement: true -> true, ER false (14.14, section 9) -- the reference's CroMo and CaSSLe+ draw
  with replacement.
- ema_schedule (BYOL): global -> global, CaSSLe task (section 3.4) -- one schedule over the whole sequence.
- warmup_epochs (BYOL): the benchmark's (10 in the paper specs) -> unchanged for CroMo, 0 for the baselines
  (14.11) -- the same schedule for every method.
- cim_la_r, cim_la_mu (CorInfoMax): 0.01 -> 0.01, finetune 0.1 (14.3) -- the value of the CroMo, CaSSLe and
  CaSSLe+ trainers.
- distill_weight (CorInfoMax): 1.0, honoured as for any objective -> 1.0 pinned, since the reference ignores
  `--lambdap` for CorInfoMax (14.2, section 7) -- a weight that is never read is a bug; `--set` and method
  defaults (cromo_nodistill) still win over the preset.

Reference behaviour not covered by a preset: per-step replay sampling is always uniform with replacement (the
reference ER samples without; cromo_bench/buffer.py); finetune-SimCLR's LR without batch scaling (0.6 instead
of 1.2 on CIFAR, section 9; use `--set lr=0.6`); the BYOL 32x32 crop on TinyImageNet (14.7; use
`--set crop_size=32`); task-1 checkpoint sharing (14.12, 14.13b); no seeding (14.20: runs are always seeded
here).

`clean` sets every method-level quirk option above to its RunConfig default explicitly, so it also overrides
the objectives' reference-flavoured defaults (Barlow's fixed lambda). The LR factor of later tasks stays the
benchmark's (`--set later_lr_factor=1` for one schedule on every task).
"""

from __future__ import annotations

from typing import Any

from cromo_bench.config import FIELDS
from cromo_bench.errors import unknown_name

#: Quirk options that `clean` resets to their RunConfig defaults.
CLEAN_KEYS = ("lambda_mode", "mix_alpha", "cromo_loss", "detach_current_target", "old_model_bn",
              "buffer_policy", "buffer_replacement", "ema_schedule")

#: Values shared by every objective and method under `reference`.
PRESETS: dict[str, dict[str, Any]] = {
    "reference": {
        "detach_current_target": False,
        "old_model_bn": "train",
        "buffer_policy": "per_task",
        "buffer_replacement": True,
        "cromo_loss": "native",
        "ema_schedule": "global",
        "mix_alpha": 1.0,
    },
    "clean": {k: FIELDS[k].default for k in CLEAN_KEYS},
}

#: `reference` values per objective (any dataset).
PRESETS_PER_OBJECTIVE: dict[str, dict[str, dict[str, Any]]] = {
    "reference": {
        "barlow": {"lambda_mode": "fixed", "mix_lambda": 0.7},
        "corinfomax": {"lambda_mode": "beta", "cromo_loss": "bt", "cim_la_r": 0.01, "cim_la_mu": 0.01,
                       "distill_weight": 1.0},
        "simclr": {"lambda_mode": "beta"},
        "byol": {"lambda_mode": "beta"},
    },
}


def _reference_method_values(ssl: str, method: str) -> dict[str, Any]:
    """The reference's per-method differences (REFERENCE.md sections 3, 9, 14)."""
    out: dict[str, Any] = {}
    if method == "er":
        out["buffer_replacement"] = False
    if ssl == "corinfomax" and method == "finetune":
        out |= {"cim_la_r": 0.1, "cim_la_mu": 0.1}
    if ssl == "byol":
        if not method.startswith("cromo"):
            out["warmup_epochs"] = 0
        if method == "cassle":
            out["ema_schedule"] = "task"
    return out


def preset_names() -> list[str]:
    return sorted(PRESETS)


def preset_values(name: str, ssl: str, method: str = "") -> dict[str, Any]:
    """RunConfig values of preset `name` for one objective and method (CromoError if the name is unknown)."""
    if name not in PRESETS:
        raise unknown_name("preset", name, PRESETS)
    out = dict(PRESETS[name])
    out |= PRESETS_PER_OBJECTIVE.get(name, {}).get(ssl, {})
    if name == "reference":
        out |= _reference_method_values(ssl, method)
    return out
