import pytest

from fairseq_partitioned.methods.alternating import level_for_update


def test_alternating_is_algorithm_1():
    assert [level_for_update(t, 2, True) for t in range(6)] == [2, 1, 2, 1, 2, 1]


def test_without_alternate_every_update_is_the_top_level():
    assert {level_for_update(t, 2, False) for t in range(5)} == {2}
    assert {level_for_update(t, 1, False) for t in range(5)} == {1}


def test_nested_levels_cycle_top_down():
    assert [level_for_update(t, 3, True) for t in range(6)] == [3, 2, 1, 3, 2, 1]


@pytest.mark.parametrize("update_freq", [1, 3])
def test_every_micro_batch_of_an_update_trains_the_same_level(update_freq):
    # fairseq calls train_step update_freq times with the same update number, then optimizer_step once
    calls = [(u, level_for_update(u, 2, True)) for u in range(4) for _ in range(update_freq)]
    for u in range(4):
        assert {lvl for n, lvl in calls if n == u} == {2 - u % 2}


def test_negative_update_is_an_error():
    with pytest.raises(ValueError):
        level_for_update(-1, 2, True)
