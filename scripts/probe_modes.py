"""Compare the `fast` and `paper` linear-probe modes (REFERENCE.md 11.1) on digits: LA and wall-clock time.

    python scripts/probe_modes.py --epochs 100 --width 8 --image-size 16 [--pretrain-epochs 0] [--device cpu]

The backbone is `models.build_backbone` at the given width, random-init, or briefly trained with a supervised
linear head (`--pretrain-epochs`) so that its features are not trivial.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from cromo_bench.config import RunConfig
from cromo_bench.data import ImageData, load_digits, normalize
from cromo_bench.evaluate import linear_probe, random_resized_crop_flip
from cromo_bench.metrics import task_metrics
from cromo_bench.models import build_backbone


def pretrain(backbone: nn.Module, feat_dim: int, data: ImageData, epochs: int, device: torch.device,
             augment: bool) -> None:
    """A few epochs of supervised training (backbone + linear head), to get a non-trivial backbone."""
    head = nn.Linear(feat_dim, data.num_classes).to(device)
    opt = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    backbone.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(data.train_y), generator=g).split(64):
            x = data.train_x[idx].to(device).float() / 255.0  # (B, C, H, W)
            if augment:  # the crops an SSL backbone is trained with
                x = random_resized_crop_flip(x, generator=g)
            x = normalize((x * 255.0).round().to(torch.uint8), data.mean, data.std)
            loss = F.cross_entropy(head(backbone(x)), data.train_y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--pretrain-epochs", type=int, default=0)
    ap.add_argument("--no-augment", action="store_true", help="pretrain on clean images, not on crops")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    cfg = RunConfig(width=args.width, image_size=args.image_size, probe_epochs=args.epochs,
                    probe_lr=args.lr, probe_batch_size=args.batch_size)
    data = load_digits(args.image_size)
    backbone, feat_dim = build_backbone(cfg)
    backbone.to(device)
    if args.pretrain_epochs:
        t0 = time.perf_counter()
        pretrain(backbone, feat_dim, data, args.pretrain_epochs, device, not args.no_augment)
        print(f"pretrained {args.pretrain_epochs} epochs in {time.perf_counter() - t0:.1f}s")
    classes = list(range(data.num_classes))
    tasks = [classes[i:i + 2] for i in range(0, len(classes), 2)]
    print(f"device={device} threads={torch.get_num_threads()} width={args.width} size={args.image_size} "
          f"epochs={args.epochs} feat_dim={feat_dim}")
    for mode in ("fast", "paper"):
        gen = torch.Generator().manual_seed(args.seed)
        res = linear_probe(backbone, data, classes, cfg, device, mode, gen)
        m = task_metrics(res.logits, res.targets, tasks)
        print(f"{mode:5s}  LA={m['LA']:.4f}  TP={m['TP']:.4f}  WP={m['WP']:.4f}  "
              f"WP_oracle={m['WP_oracle']:.4f}  time={res.train_seconds:.1f}s")


if __name__ == "__main__":
    main()
