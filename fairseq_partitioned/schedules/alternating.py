"""Which level an update trains: the schedule of ATS Algorithm 1 (Mohtashami, Jaggi, Stich 2022).

Algorithm 1 alternates the full network (even t) and the core (odd t). With nested cores (levels
1..L) we cycle from the top level down: t -> max_level - (t mod max_level), which is Algorithm 1 for
L = 2. The schedule is keyed on fairseq's update number, so every micro-batch of one update
(``--update-freq``) trains the same level, and a resumed run continues where it stopped.
"""


def level_for_update(update_num: int, max_level: int, alternate: bool) -> int:
    if update_num < 0:
        raise ValueError(f"update number must be >= 0, got {update_num}")
    if not alternate:
        return max_level
    return max_level - (update_num % max_level)
