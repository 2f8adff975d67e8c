"""The GaP schedule (which matrices are dense when) and the learning rate that restarts with each step."""
import pytest
from fairseq.optim import FairseqOptimizer
from omegaconf import OmegaConf

from fairseq_partitioned.optim.gap_inverse_sqrt import GapInverseSqrtConfig, GapInverseSqrtSchedule
from fairseq_partitioned.schedules import GapSchedule
from fairseq_partitioned.schedules.gap import SINGLE_STEP

PARTS = [["e0", "e1"], ["d0"], ["d1"]]


def test_cyclic_steps_in_epochs():
    s = GapSchedule(PARTS, steps=5, step_epochs=2)
    assert [s.step_at(epoch, 0) for epoch in range(1, 13)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, None, None]
    assert [s.dense_at(k) for k in range(4)] == [["e0", "e1"], ["d0"], ["d1"], ["e0", "e1"]]
    assert s.dense_at(None) == []


def test_cyclic_steps_in_updates():
    s = GapSchedule(PARTS, steps=2, step_updates=3)
    assert [s.step_at(1, u) for u in range(8)] == [0, 0, 0, 1, 1, 1, None, None]


def test_random_strategy_draws_a_third_of_the_matrices_every_step_never_those_of_the_step_before():
    parts = [["e0", "e1", "e2"], ["d0", "d1", "d2"], ["d3", "d4", "d5"]]
    a = GapSchedule(parts, steps=8, step_updates=1, strategy="random", seed=3)
    b = GapSchedule(parts, steps=8, step_updates=1, strategy="random", seed=3)
    c = GapSchedule(parts, steps=8, step_updates=1, strategy="random", seed=4)
    steps = [a.dense_at(k) for k in range(8)]
    assert steps == [b.dense_at(k) for k in range(8)]  # seeded: a resumed run makes the same choice
    assert all(len(s) == 3 for s in steps)  # 9 matrices // kappa 3
    assert all(not set(x) & set(y) for x, y in zip(steps, steps[1:]))  # never the step before's
    assert all(s == sorted(s, key=[n for p in parts for n in p].index) for s in steps)  # model order
    assert any(s not in parts for s in steps)  # not the contiguous partitions
    assert any(a.dense_at(k) != c.dense_at(k) for k in range(8))


def test_single_step_runs_grow_one_set_for_the_whole_run():
    worker = GapSchedule(PARTS, grow_partition=1)
    assert worker.step_at(7, 100) == SINGLE_STEP and worker.dense_at(SINGLE_STEP) == ["d0"]
    cgap = GapSchedule(PARTS, steps=6, step_updates=2)
    step4 = GapSchedule(PARTS, grow_step=4)  # step 4 of that C-GaP run, as its own run
    assert step4.dense_at(step4.step_at(1, 0)) == cgap.dense_at(4) == ["d0"]
    assert cgap.first_grown == ["e0", "e1"] and step4.first_grown == ["d0"]
    assert GapSchedule(PARTS).first_grown == []  # fixed masks grow nothing


class _Optimizer(FairseqOptimizer):
    def __init__(self):
        self.lr = None

    def set_lr(self, lr):
        self.lr = lr

    def get_lr(self):
        return self.lr


def _scheduler(**gap):
    cfg = OmegaConf.structured(GapInverseSqrtConfig(warmup_updates=2, warmup_init_lr=0.0, lr=[1.0], **gap))
    return GapInverseSqrtSchedule(cfg, _Optimizer())


def test_learning_rate_restarts_at_each_step_in_updates():
    sched = _scheduler(gap_steps=2, gap_step_epochs=0, gap_step_updates=4)
    lrs = [sched.step_update(u) for u in range(10)]
    assert lrs[:4] == lrs[4:8]  # step 1 repeats step 0's warm-up and decay
    assert lrs[8] == lrs[0]  # the fine-tune (from update 8) restarts too
    assert lrs[2] == pytest.approx(1.0) and lrs[3] == pytest.approx(2 ** 0.5 / 3 ** 0.5)


def test_learning_rate_restarts_at_each_step_in_epochs_and_survives_a_resume():
    sched = _scheduler(gap_steps=3, gap_step_epochs=2, gap_step_updates=0)
    lrs = {}
    u = 0
    for epoch in range(1, 5):  # 3 updates per epoch
        sched.step_begin_epoch(epoch)
        for _ in range(3):
            lrs[u] = sched.step_update(u)
            u += 1
    assert [lrs[u] for u in range(6)] == [lrs[u] for u in range(6, 12)]  # epochs 3-4 = epochs 1-2
    resumed = _scheduler(gap_steps=3, gap_step_epochs=2, gap_step_updates=0)
    resumed.load_state_dict(sched.state_dict())
    resumed.step_begin_epoch(4)  # resumed in the middle of step 1
    assert resumed.step_update(11) == lrs[11]
