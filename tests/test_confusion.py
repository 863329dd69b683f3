"""The task-confusion study: CIL- / DIL-minibatches, the evaluation split, and the digits benchmarks end to end."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cromo_bench.config import RunConfig
from cromo_bench.confusion import (
    cil_batches,
    count_minibatches,
    dil_batches,
    dil_shards,
    eval_split,
    minibatches,
    round_robin,
)
from cromo_bench.errors import CromoError

VIRTUAL = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def _labels(per_class: int = 37) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat_interleave(per_class)
    return y[torch.randperm(len(y), generator=g)]  # classes interleaved, as in a real dataset


def _task_of(c: int) -> int:
    return c // 2


def test_cil_batches_hold_one_virtual_task_each_and_cycle_over_tasks() -> None:
    y = _labels()
    out = cil_batches(y, VIRTUAL, 16, torch.Generator().manual_seed(1))
    owners = [{_task_of(int(c)) for c in y[b]} for b in out]
    assert all(len(o) == 1 for o in owners)  # never two tasks in one minibatch
    sequence = [next(iter(o)) for o in owners]
    assert sequence[:10] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]  # round-robin over the virtual tasks
    seen = torch.cat(out)
    assert len(seen) == len(set(seen.tolist()))  # no sample twice in an epoch
    assert len(seen) == len(y)  # 74 samples per task: 4 x 16 + 10, nothing dropped


def test_dil_shards_are_class_stratified_and_fixed() -> None:
    y = _labels(40)
    shards = dil_shards(y, 5)
    for shard in shards:
        counts = torch.bincount(y[shard], minlength=10)
        assert counts.tolist() == [8] * 10  # 40 per class / 5 shards, every class in every shard
    again = dil_shards(y, 5)
    assert all(torch.equal(a, b) for a, b in zip(shards, again, strict=True))  # not reshuffled per epoch
    out = dil_batches(y, 5, 20, torch.Generator().manual_seed(2))
    member = torch.empty(len(y), dtype=torch.long)
    for k, s in enumerate(shards):
        member[s] = k
    assert all(len(set(member[b].tolist())) == 1 for b in out)  # each batch from one shard
    assert [int(member[b[0]]) for b in out[:5]] == [0, 1, 2, 3, 4]
    assert max(len({_task_of(int(c)) for c in y[b]}) for b in out) >= 4  # DIL batches span tasks


def test_random_mode_matches_a_plain_shuffle() -> None:
    out = minibatches("random", 100, 32, torch.Generator().manual_seed(3))
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.cat(out), perm)
    assert [len(b) for b in out] == [32, 32, 32, 4]
    assert [len(b) for b in minibatches("random", 65, 32, torch.Generator())] == [32, 32]  # 1 left: dropped


def test_round_robin_lets_short_groups_drop_out() -> None:
    a, b = [torch.tensor([0]), torch.tensor([1]), torch.tensor([2])], [torch.tensor([9])]
    assert [int(t) for t in round_robin([a, b])] == [0, 9, 1, 2]


def test_cil_without_virtual_tasks_is_a_user_error() -> None:
    with pytest.raises(CromoError, match="eval_task_sizes"):
        minibatches("cil", 10, 4, torch.Generator(), torch.zeros(10, dtype=torch.long), None)


def test_trainer_batches_follow_cfg_minibatch() -> None:
    from cromo_bench.train import batches

    y = _labels()
    cfg = dataclasses.replace(RunConfig(), batch_size=16, task_sizes=(10,), eval_task_sizes=(2,) * 5,
                              minibatch="cil")
    out = batches(y, cfg, torch.Generator().manual_seed(0))
    assert all(len({_task_of(int(c)) for c in y[b]}) == 1 for b in out)
    mixed = batches(y, dataclasses.replace(cfg, minibatch="random"), torch.Generator().manual_seed(0))
    assert max(len({_task_of(int(c)) for c in y[b]}) for b in mixed) > 1


@pytest.mark.parametrize("mode", ["random", "cil", "dil"])
@pytest.mark.parametrize(("per_class", "batch_size"), [(37, 16), (40, 20), (33, 7), (5, 64)])
def test_count_minibatches_is_the_number_of_batches(mode: str, per_class: int, batch_size: int) -> None:
    y = _labels(per_class)
    out = minibatches(mode, len(y), batch_size, torch.Generator().manual_seed(4), y, VIRTUAL)
    assert count_minibatches(mode, len(y), batch_size, y, VIRTUAL) == len(out)


def test_count_minibatches_by_hand() -> None:
    y = _labels(37)  # 370 samples; virtual tasks and shards of 74 samples each
    assert count_minibatches("random", 370, 16, y, VIRTUAL) == 24  # 23 x 16 + 2 (kept: two samples)
    assert count_minibatches("cil", 370, 16, y, VIRTUAL) == 25  # 5 x (4 x 16 + 10)
    # DIL: 37 per class over 5 shards gives shards of 8, 8, 7, 7, 7 per class: 80, 80, 70, 70, 70 samples
    assert count_minibatches("dil", 370, 16, y, VIRTUAL) == 5 + 5 + 5 + 5 + 5
    assert count_minibatches("dil", 370, 35, y, VIRTUAL) == 3 + 3 + 2 + 2 + 2  # 80 = 2 x 35 + 10; 70 = 2 x 35
    with pytest.raises(CromoError, match="allowed"):
        count_minibatches("stratified", 370, 16, y, VIRTUAL)


def test_trainer_counts_the_cil_steps_it_takes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The schedule length (BYOL's K, the progress bar) is the number of steps actually taken: 240 samples in
    batches of 20 are 12 random batches but 5 x 3 CIL batches (48 per virtual task = 2 x 20 + 8)."""
    from cromo_bench.data import load_digits
    from cromo_bench.experiment import build_config
    from cromo_bench.tracking import MemoryTracker
    from cromo_bench.train import Trainer
    from tests.helpers import TINY_SETS

    sets = TINY_SETS + ["batch_size=20", "epochs_first=2", f"run_dir={tmp_path}", "device=cpu"]
    cfg = build_config("finetune", "byol", "confusion-digits-cil", sets=sets)
    trainer = Trainer(cfg, MemoryTracker(), load_digits(16).subset_per_class(24), progress=False)
    assert trainer.total_steps == 2 * 15
    trainer.train()
    assert trainer.at.global_step == trainer.total_steps
    assert trainer.parts.objective.ema_total == trainer.total_steps


def test_eval_split() -> None:
    assert eval_split([[0, 1], [2, 3]], None, 1) == ([[0, 1], [2, 3]], 1)
    assert eval_split([list(range(10))], VIRTUAL, 0) == (VIRTUAL, 4)  # joint training: every task seen
    assert eval_split([[0, 1, 2, 3], [4, 5, 6, 7, 8, 9]], VIRTUAL, 0) == (VIRTUAL, 1)
    with pytest.raises(CromoError):
        eval_split([[0, 1, 2], [3, 4, 5, 6, 7, 8, 9]], VIRTUAL, 0)  # task 1 splits a virtual task


def test_supervised_loss_uses_labels() -> None:
    from cromo_bench.objectives.supervised import supervised_loss

    y = torch.tensor([0, 1, 2])
    right = torch.eye(3) * 20
    assert float(supervised_loss(right, right, y)) < 1e-6
    assert float(supervised_loss(right, right.roll(1, 0), y)) > 5


@pytest.mark.parametrize("ssl", ["barlow", "supervised"])
def test_confusion_digits_reports_tp_for_cil_and_dil(ssl: str, tmp_cwd: object) -> None:
    from cromo_bench.experiment import build_config
    from cromo_bench.runner import run
    from cromo_bench.tracking import MemoryTracker

    tiny = ["probe_epochs=3", "knn_k=10", "subset_per_class=30"]
    results = {}
    for mode in ("cil", "dil"):
        cfg = build_config("finetune", ssl, f"confusion-digits-{mode}", flags={"epochs_first": 1,
                                                                            "epochs_later": 1}, sets=tiny)
        assert cfg.task_sizes == (10,) and cfg.eval_task_sizes == (2,) * 5 and cfg.minibatch == mode
        tracker = MemoryTracker()
        r = run(cfg, tracker, progress=False)
        m = r.metrics
        assert 0.0 <= m["TP"] <= 1.0 and 0.0 <= m["WP"] <= 1.0
        assert m["LA"] == pytest.approx(m["TP"] * m["WP"], abs=1e-6)
        assert len(r.accuracy_matrix) == 1 and len(r.accuracy_matrix[0]) == 5  # 5 virtual tasks
        assert tracker.status == "FINISHED" and tracker.last("TP") == m["TP"]
        assert tracker.params["minibatch"] == mode
        results[mode] = m["TP"]
    assert set(results) == {"cil", "dil"}
