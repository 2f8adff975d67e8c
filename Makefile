# fairseq_partitioned: set-up, tests, quickstart, benchmark.
# `make setup` is idempotent: it (re)creates only what is missing from .venv/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-done

.PHONY: setup test quickstart bench clean

setup: $(STAMP)

$(STAMP): setup.py Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# torch first, pinned: a bare `torch` would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q "numpy<2.5" cython
	# fairseq-fixed pins torchaudio, which would replace the CPU torch: install without deps,
	# then its real needs.
	$(PY) -c "import fairseq" 2>/dev/null || $(PIP) install -q --no-deps --no-build-isolation fairseq-fixed==0.12.3.1
	$(PIP) install -q hydra-core==1.3.2 omegaconf==2.3.0 bitarray scikit-learn sacrebleu regex tqdm cffi packaging \
		pytest pytest-xdist sacremoses subword-nmt matplotlib
	# the plugin and its deploy extra (setup.py: ctranslate2 4.8, which pulls numpy and pyyaml, no torch)
	$(PIP) install -q --no-build-isolation -e ".[deploy]"
	touch $(STAMP)

# One pytest worker per core, each test file on one worker (a file's fixtures are built once).
test: setup
	$(PY) -m pytest -q -n auto --dist loadfile tests

# On the bundled Bible corpus, on the CPU: the core of an ATS run next to the same core trained alone, and
# the ATS full network, with parameters and test BLEU.
quickstart: setup
	$(PY) scripts/quickstart.py

# Speed and memory against vanilla fairseq (scripts/benchmark.py --help for options).
bench: setup
	$(PY) scripts/benchmark.py --threads 1 --json benchmark.json

clean:
	rm -rf $(VENV) build *.egg-info
