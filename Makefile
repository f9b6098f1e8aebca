# Two set-up commands on a fresh machine: `make demo` (the main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN ?= runs/demo
STAMP := $(VENV)/.installed

.PHONY: install demo drift-demo test test-slow lint samples clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: these wheels lie on the machine's disk (no 3 GB download).
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	# Every extra the tests exercise (make test must not skip for a missing package).
	$(BIN)/pip install -q -e '.[dev,towers,onnx,serve,explain,tune,scale,vectors]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 bash scripts/demo.sh $(RUN)

drift-demo: $(STAMP)
	HF_HUB_OFFLINE=1 bash scripts/drift_demo.sh

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

samples: $(STAMP)
	$(BIN)/python scripts/make_samples.py --out data_samples --seed 0

clean:
	rm -rf $(RUN) .pytest_cache
