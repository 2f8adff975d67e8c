import os
import sys

# Tests import the plugin from this checkout and the helpers beside them.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fairseq_partitioned  # noqa: E402,F401  (registers the task and optimizer)
