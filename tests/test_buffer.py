"""The replay buffer (cromo_bench/buffer.py; REFERENCE.md section 4): quotas, capacity, sampling, balance."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cromo_bench.buffer import ReplayBuffer, check_budget, make_buffer, quotas
from cromo_bench.config import RunConfig
from cromo_bench.data import ImageData
from cromo_bench.errors import CromoError


def fake_task(task: int, classes: list[int], per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images whose first pixel encodes (task, index) so stored images can be traced back."""
    labels = torch.tensor([c for c in classes for _ in range(per_class)])
    images = torch.zeros(len(labels), 3, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = task
    images[:, 0, 0, 1] = torch.arange(len(labels), dtype=torch.uint8)
    images[:, 1, 0, 0] = labels.to(torch.uint8)
    return images, labels


def fill(buffer: ReplayBuffer, tasks: list[list[int]], per_class: int, seed: int = 0) -> torch.Generator:
    g = torch.Generator().manual_seed(seed)
    for t, classes in enumerate(tasks):
        buffer.add_task(*fake_task(t, classes, per_class), t, g)
    return g


def tiny_data(per_class: int, num_classes: int = 4) -> ImageData:
    x = torch.zeros(per_class * num_classes, 3, 4, 4, dtype=torch.uint8)
    y = torch.arange(num_classes).repeat_interleave(per_class)
    return ImageData("tiny", x, y, x[:2], y[:2], tuple(map(str, range(num_classes))), (0.5,) * 3, (0.5,) * 3)


# --- per_task (the reference) -------------------------------------------------------------------------------


def test_per_task_buffer_grows_by_memory_each_task():
    buffer = ReplayBuffer(memory=7, policy="per_task", replacement=True)
    g = torch.Generator().manual_seed(0)
    assert len(buffer) == 0 and buffer.capacity == 0
    for t, classes in enumerate([[0, 1], [2, 3], [4, 5]]):
        buffer.add_task(*fake_task(t, classes, 5), t, g)
        assert len(buffer) == 7 * (t + 1) == buffer.capacity
        assert buffer.task_counts() == {k: 7 for k in range(t + 1)}  # the quota of every finished task
    # every stored image comes from its own task and carries its label
    assert buffer.images is not None
    assert torch.equal(buffer.images[:, 0, 0, 0].long(), buffer.task_ids)
    assert torch.equal(buffer.images[:, 1, 0, 0].long(), buffer.labels)


def test_per_task_with_replacement_may_exceed_the_task_size_and_duplicates():
    buffer = ReplayBuffer(memory=30, policy="per_task", replacement=True)
    fill(buffer, [[0, 1]], per_class=5)  # 10 images, 30 draws: duplicates are certain
    assert len(buffer) == 30
    assert buffer.images is not None
    assert len(buffer.images[:, 0, 0, 1].unique()) < 30


def test_per_task_without_replacement_has_no_duplicates():
    buffer = ReplayBuffer(memory=10, policy="per_task", replacement=False)
    fill(buffer, [[0, 1], [2, 3]], per_class=5)  # the whole task each time
    assert buffer.images is not None
    for t in (0, 1):
        ids = buffer.images[buffer.task_ids == t][:, 0, 0, 1]
        assert sorted(ids.tolist()) == list(range(10))


def test_per_task_without_replacement_rejects_a_budget_beyond_the_task():
    buffer = ReplayBuffer(memory=11, policy="per_task", replacement=False)
    with pytest.raises(CromoError, match="without replacement"):
        fill(buffer, [[0, 1]], per_class=5)


# --- fixed_total --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("memory", [12, 13, 20])
def test_fixed_total_stays_class_balanced_and_within_capacity(memory):
    buffer = ReplayBuffer(memory=memory, policy="fixed_total", replacement=True)  # replacement is ignored
    g = torch.Generator().manual_seed(1)
    for t, classes in enumerate([[0, 1], [2, 3], [4, 5]]):
        buffer.add_task(*fake_task(t, classes, 10), t, g)
        seen = 2 * (t + 1)
        counts = buffer.class_counts()
        assert len(buffer) == memory == buffer.capacity
        assert sorted(counts) == list(range(seen))
        assert max(counts.values()) - min(counts.values()) <= 1  # balanced up to the remainder
        assert sum(counts.values()) == memory
        for c in range(seen):  # no image stored twice
            ids = buffer.images[buffer.labels == c][:, 0, 0, 1] if buffer.images is not None else None
            assert ids is not None and len(ids.unique()) == len(ids)
    # old classes shrink by keeping a subset of what they had, never re-drawing
    assert buffer.images is not None
    assert torch.equal(buffer.images[:, 1, 0, 0].long(), buffer.labels)


def test_fixed_total_rebalance_keeps_old_images():
    buffer = ReplayBuffer(memory=8, policy="fixed_total")
    g = torch.Generator().manual_seed(3)
    buffer.add_task(*fake_task(0, [0, 1], 10), 0, g)
    assert buffer.images is not None
    before = {tuple(v.tolist()) for v in buffer.images[:, 0, 0, :2]}
    buffer.add_task(*fake_task(1, [2, 3], 10), 1, g)
    after_old = {tuple(v.tolist()) for v in buffer.images[buffer.task_ids == 0][:, 0, 0, :2]}
    assert len(after_old) == 4 and after_old <= before


def test_fixed_total_rejects_a_class_smaller_than_its_quota():
    buffer = ReplayBuffer(memory=30, policy="fixed_total")
    with pytest.raises(CromoError, match="class"):
        fill(buffer, [[0, 1]], per_class=5)  # 15 slots per class, 5 images each


def test_quotas_split_the_remainder():
    q = quotas(11, [0, 1, 2, 3], torch.Generator().manual_seed(0))
    assert sum(q.values()) == 11 and sorted(q.values()) == [2, 3, 3, 3]


# --- sampling -----------------------------------------------------------------------------------------------


def test_sampling_covers_every_stored_task_uniformly():
    buffer = ReplayBuffer(memory=10, policy="per_task", replacement=False)
    g = fill(buffer, [[0, 1], [2, 3], [4, 5]], per_class=5)
    idx = buffer.sample_indices(3000, g)
    tasks = buffer.task_ids[idx]
    counts = torch.bincount(tasks, minlength=3)
    assert (counts > 0).all()
    assert (counts.float() / 3000 - 1 / 3).abs().max() < 0.05  # uniform over the pooled buffer
    images = buffer.sample(16, g)
    assert images.dtype == torch.uint8 and images.shape == (16, 3, 4, 4)


def test_sampling_is_with_replacement_and_follows_the_generator():
    buffer = ReplayBuffer(memory=4, policy="per_task", replacement=False)
    fill(buffer, [[0, 1]], per_class=2)
    a = buffer.sample_indices(20, torch.Generator().manual_seed(5))
    b = buffer.sample_indices(20, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and len(a.unique()) <= 4  # 20 draws from 4 images


def test_empty_buffer_cannot_be_sampled():
    with pytest.raises(CromoError, match="empty"):
        ReplayBuffer(memory=4).sample(2, torch.Generator())


def test_state_dict_round_trip():
    buffer = ReplayBuffer(memory=5)
    fill(buffer, [[0, 1], [2, 3]], per_class=4)
    other = ReplayBuffer(memory=5)
    other.load_state_dict(buffer.state_dict())
    assert len(other) == 10 and torch.equal(other.labels, buffer.labels)
    assert other.images is not None and buffer.images is not None and torch.equal(other.images, buffer.images)


# --- validation before training -----------------------------------------------------------------------------


def test_make_buffer_checks_budgets_up_front():
    data = tiny_data(per_class=5)
    cfg = RunConfig(task_sizes=(2, 2), memory=11, buffer_policy="per_task", buffer_replacement=False)
    with pytest.raises(CromoError, match="memory=11 per task exceeds the 10 training images of task 1"):
        make_buffer(cfg, data, "cpu")
    assert len(make_buffer(dataclasses.replace(cfg, memory=10), data, "cpu")) == 0
    assert make_buffer(dataclasses.replace(cfg, buffer_replacement=True), data, "cpu").memory == 11
    fixed = dataclasses.replace(cfg, buffer_policy="fixed_total", memory=11)
    with pytest.raises(CromoError, match="fixed_total"):
        check_budget(fixed, data)  # 6 slots per class after task 1, 5 images per class
    check_budget(dataclasses.replace(fixed, memory=10), data)  # 5 per class fits


def test_bad_policy_and_zero_memory_are_errors():
    with pytest.raises(CromoError, match="buffer_policy"):
        ReplayBuffer(memory=4, policy="reservoir")
    with pytest.raises(CromoError, match="memory > 0"):
        ReplayBuffer(memory=0)
