# Two set-up commands on a fresh machine: `make demo` (the main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN ?= runs/demo
STAMP := $(VENV)/.installed
# Label Studio, the labeling tool of the review round trip, in a venv of its own: its Django
# pins must not move ours. sentry-sdk 3 makes 1.23.2 fail to start ("send_default_pii").
LS_VENV ?= .venv-labelstudio
LS_STAMP := $(LS_VENV)/.installed

.PHONY: install labelstudio demo drift-demo worker-demo test test-slow lint samples clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: these wheels lie on the machine's disk (no 3 GB download).
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	# Every extra the tests exercise (make test must not skip for a missing package).
	$(BIN)/pip install -q -e '.[dev,towers,onnx,serve,worker,explain,tune,scale,vectors,review]'
	# The worker's tests start a real redis-server (Debian's; root on our machines).
	command -v redis-server >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server)
	touch $(STAMP)

$(LS_STAMP):
	test -x $(LS_VENV)/bin/python || $(PY) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q 'label-studio==1.23.2' 'sentry-sdk<3'
	touch $(LS_STAMP)

install: $(STAMP)

labelstudio: $(LS_STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 bash scripts/demo.sh $(RUN)

drift-demo: $(STAMP)
	HF_HUB_OFFLINE=1 bash scripts/drift_demo.sh

# Needs a bundle: `make demo`'s runs/demo/bundle, or BUNDLE=DIR (docs/worker.md).
worker-demo: $(STAMP)
	HF_HUB_OFFLINE=1 bash scripts/worker_demo.sh

test: $(STAMP) $(LS_STAMP)
	$(BIN)/lint-imports  # the layers of docs/architecture.md (contracts in pyproject.toml)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-slow: $(STAMP) $(LS_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

samples: $(STAMP)
	$(BIN)/python scripts/make_samples.py --out data_samples --seed 0

clean:
	rm -rf $(RUN) .pytest_cache
