#!/usr/bin/env bash
# GPU check of issue 8 (training speed), in one go, from the repository root of a machine with one CUDA GPU:
#
#     bash scripts/gpu_perf_check.sh 2>&1 | tee gpu_perf_check.log
#
# About 6-10 minutes on an H200 (most of it the two perf runs and the --compile warm-up). Prints:
#   1. the CUDA tests (bf16 autocast + channels_last step vs fp32 for every method x objective; samplers on
#      the host; augmentation on CUDA),
#   2. host syncs inside the training step (torch.cuda.set_sync_debug_mode), with the lines that cause them,
#   3. `cromo-bench perf` for CroMo-Mixup + Barlow Twins on cifar100-10x10 shapes with the full ResNet-18
#      (width 64, batch 256 + replay 64): images/s, steps/s, overhead over the compute floor, speed-up over the
#      reference-style pipeline (DataLoader with $REF_WORKERS workers), augmentation figures, FLOP/s and the
#      estimated full-run time; eager, then with --compile.
# Environment: PYTHON (default .venv/bin/python, else python3), STEPS (20), REPEATS (5), REF_WORKERS (8),
# SKIP_TESTS=1, SKIP_COMPILE=1. Nothing is downloaded: the perf harness uses synthetic images.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
STEPS=${STEPS:-20}
REPEATS=${REPEATS:-5}
REF_WORKERS=${REF_WORKERS:-8}
SPLIT=cifar100-10x10
stamp() { echo; echo "=== $(date +%H:%M:%S) $*"; }

stamp "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch, kornia; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'kornia', \
kornia.__version__, 'gpu', torch.cuda.get_device_name(0))" || { echo "no usable torch + CUDA"; exit 1; }
git log -1 --format='commit %H %s' 2>/dev/null || true

if [ "${SKIP_TESTS:-0}" != 1 ]; then
  stamp "1. CUDA tests"
  "$PY" -m pytest -q -p no:cacheprovider tests/test_perf.py tests/test_augment.py tests/test_jitter.py -k "cuda" -rs \
    || echo "CUDA TESTS FAILED"
fi

stamp "2. host syncs inside the training step (3 steps after warm-up; ResNet-18 width 64)"
"$PY" - "$SPLIT" <<'EOF' || echo "SYNC CHECK FAILED"
import collections, sys, warnings
import torch
from cromo_bench.experiment import build_config
from cromo_bench.perf import Bench, synthetic_data

cfg = build_config("cromo", "barlow", sys.argv[1], flags={"device": "cuda"})
bench = Bench(cfg, synthetic_data(cfg))
for i in range(3):
    bench.step(i)
torch.cuda.synchronize()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    torch.cuda.set_sync_debug_mode("warn")
    for i in range(3):
        bench.step(i)
    torch.cuda.set_sync_debug_mode("default")
torch.cuda.synchronize()
where = collections.Counter(f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message))
print(f"host syncs in 3 steps: {sum(where.values())}")
for place, n in where.most_common(12):
    print(f"  {n:4d}  {place}")
EOF

stamp "3a. perf, eager (bf16 autocast, channels_last, cuDNN benchmark)"
"$PY" -m cromo_bench.cli perf --method cromo --ssl barlow --split "$SPLIT" --device cuda \
  --steps "$STEPS" --repeats "$REPEATS" --ref-workers "$REF_WORKERS" || echo "PERF (EAGER) FAILED"

if [ "${SKIP_COMPILE:-0}" != 1 ]; then
  stamp "3b. perf, --compile"
  "$PY" -m cromo_bench.cli perf --method cromo --ssl barlow --split "$SPLIT" --device cuda --compile \
    --steps "$STEPS" --repeats 3 --ref-workers "$REF_WORKERS" || echo "PERF (COMPILE) FAILED"
fi
stamp "done"
