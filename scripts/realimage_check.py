"""Real-image check: finetune vs CroMo-Mixup on CIFAR-10 JPEGs, 5 tasks x 2 classes, on a CPU.

Extracts the CIFAR-10 JPEG archive (train/<class>/*.jpg, test/<class>/*.jpg) into a temporary folder, keeps
the first `--per-class` training images of every class (and `--test-per-class` test images) through symlinks,
loads them with `cromo_bench.data.load_image_folder(root, name="cifar10")`, and runs both methods with one
objective on the `cifar10-cpu-5x2` benchmark settings (narrowed by the options below). It prints LA / TP / WP
for both. Without the archive it prints why and exits 0.

    nice .venv/bin/python scripts/realimage_check.py --width 8 --epochs 10
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
import time
from pathlib import Path

DEFAULT_ARCHIVE = Path("/work/shared/data/cifar10-jpeg.tar.gz")


def extract(archive: Path, dest: Path) -> Path:
    """Extract once; return the folder holding train/ and test/."""
    marker = dest / ".extracted"
    if not marker.exists():
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
        marker.touch()
    for root in (dest, *sorted(p for p in dest.iterdir() if p.is_dir())):
        if (root / "train").is_dir() and (root / "test").is_dir():
            return root
    raise SystemExit(f"error: {archive} holds no train/ and test/ folders")


def subset_tree(root: Path, dest: Path, per_class: int, test_per_class: int) -> Path:
    """A tree of symlinks to the first images (sorted by name) of every class."""
    for split, n in (("train", per_class), ("test", test_per_class)):
        for class_dir in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            out = dest / split / class_dir.name
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted(class_dir.iterdir())[:n]:
                link = out / f.name
                if not link.exists():
                    link.symlink_to(f.resolve())
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cromo-realimage")
    ap.add_argument("--ssl", default="barlow")
    ap.add_argument("--methods", default="finetune,cromo")
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--test-per-class", type=int, default=1000)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra key=value overrides")
    args = ap.parse_args()
    if not args.archive.is_file():
        print(f"skipped: no CIFAR-10 archive at {args.archive} (pass --archive PATH)")
        return 0

    import torch

    from cromo_bench.data import load_image_folder
    from cromo_bench.experiment import build_config
    from cromo_bench.runner import run
    from cromo_bench.tracking import MemoryTracker

    torch.set_num_threads(args.threads)
    t0 = time.time()
    root = extract(args.archive, args.workdir / "full")
    tree = subset_tree(root, args.workdir / f"subset-{args.per_class}-{args.test_per_class}", args.per_class,
                       args.test_per_class)
    data = load_image_folder(str(tree), name="cifar10")
    print(f"data: {len(data.train_x)} train / {len(data.test_x)} test images, {data.num_classes} classes, "
          f"{data.image_size}px, loaded in {time.time() - t0:.0f}s", flush=True)
    sets = [f"width={args.width}", f"subset_per_class={args.per_class}", "eval_every_task=false",
            f"run_dir={args.workdir / 'runs'}", "device=cpu", *args.sets]
    results = {}
    for method in args.methods.split(","):
        flags = {"seed": args.seed, "epochs_first": args.epochs, "epochs_later": args.epochs}
        cfg = build_config(method, args.ssl, "cifar10-cpu-5x2", sets=sets, flags=flags)
        start = time.time()
        result = run(cfg, MemoryTracker(), progress=False, data=data)
        m = result.metrics
        results[method] = m
        print(f"{method:>10} + {args.ssl}: LA {m['LA']:.4f}  TP {m['TP']:.4f}  WP {m['WP']:.4f}  "
              f"({time.time() - start:.0f}s; width {cfg.width}, {cfg.epochs_first} epochs/task, memory "
              f"{cfg.memory}/task, replay {cfg.replay_bs})", flush=True)
    if len(results) > 1:
        names = list(results)
        print("TP: " + "  ".join(f"{n} {results[n]['TP']:.4f}" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
