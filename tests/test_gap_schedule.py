"""The GaP schedule (which matrices are dense when) and the learning rate that restarts with each step."""
import pytest
from fairseq.optim import FairseqOptimizer
from omegaconf import OmegaConf

from fairseq_partitioned.optim.gap_inverse_sqrt import GapInverseSqrtConfig, GapInverseSqrtSchedule
from fairseq_partitioned.schedules import GapSchedule

PARTS = [["e0", "e1"], ["d0"], ["d1"]]


def test_cyclic_steps_in_epochs():
    s = GapSchedule(PARTS, steps=5, step_epochs=2)
    assert [s.step_at(epoch, 0) for epoch in range(1, 13)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, None, None]
    assert [s.dense_at(k) for k in range(4)] == [["e0", "e1"], ["d0"], ["d1"], ["e0", "e1"]]
    assert s.dense_at(None) == []


def test_cyclic_steps_in_updates():
    s = GapSchedule(PARTS, steps=2, step_updates=3)
    assert [s.step_at(1, u) for u in range(8)] == [0, 0, 0, 1, 1, 1, None, None]


def test_random_strategy_is_seeded_and_covers_every_matrix_each_round():
    a = GapSchedule(PARTS, steps=6, step_updates=1, strategy="random", seed=3)
    b = GapSchedule(PARTS, steps=6, step_updates=1, strategy="random", seed=3)
    c = GapSchedule(PARTS, steps=6, step_updates=1, strategy="random", seed=4)
    rounds = [[a.dense_at(k) for k in range(r * 3, r * 3 + 3)] for r in range(2)]
    assert rounds == [[b.dense_at(k) for k in range(r * 3, r * 3 + 3)] for r in range(2)]
    for r in rounds:
        assert sorted(n for part in r for n in part) == ["d0", "d1", "e0", "e1"]
        assert sorted(len(p) for p in r) == [1, 1, 2]
    assert any(a.dense_at(k) != c.dense_at(k) for k in range(6))


def test_a_pgap_worker_always_grows_its_partition():
    s = GapSchedule(PARTS, grow_partition=1)
    assert s.dense_at(None) == ["d0"] and s.step_at(7, 100) is None


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
