import os
import sys

# One OpenMP thread per process, for the tests' processes and every command they start (a user's own
# OMP_NUM_THREADS stands): their models are tiny, so a second thread buys nothing, and on a machine shared
# with other work a thread that another process preempts stalls every parallel region (measured: a tiny
# training 8x the CPU time with torch's default of one thread per core; scripts/benchmark.py says the same).
# Before torch is imported: it reads the variable once.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Tests import the plugin from this checkout and the helpers beside them; the scripts' machinery by its package
# path (``from harness.papers import tables``), scripts/ last on the path as a command running from it has it
# first; a command itself by its file (fairseq_helpers.command).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.join(ROOT, "scripts"))

import fairseq_partitioned  # noqa: E402,F401  (registers the task and optimizer)


import pytest  # noqa: E402

import fairseq_helpers as h  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """Dummy parallel data, binarized: shared by the end-to-end tests (each saves elsewhere)."""
    d = str(tmp_path_factory.mktemp("data"))
    h.create_dummy_data(d, num_examples=200)
    h.preprocess_translation_data(d)
    return d


# `make test` runs the files on two workers, a file on one worker (its fixtures built once), each worker taking
# the next file in collection order when it is done. The longest files go first, so that the workers do not end
# with one idle beside the last of them: the files of 30 s or more, longest first (148 s to 34 s, each the sum of
# its tests' times from `make test PYTEST_ADDOPTS=--durations=0`, alone on 2 cores).
LONGEST_FIRST = ("test_study.py", "test_reproduce.py", "test_deploy.py", "test_faults.py", "test_gap_ladder.py",
                 "test_warm.py", "test_distillation.py", "test_gap.py", "test_benchmark.py", "test_bible_data.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: a file's tests keep their order
