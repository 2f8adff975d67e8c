import os
import sys

# Tests import the plugin from this checkout and the helpers beside them.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

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
