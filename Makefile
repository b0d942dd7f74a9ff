# Two commands: `make run` (the main job on the embedded default) and `make test`.
# Each builds .venv on first use, installing everything under constraints.txt.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run simulate test test-all bench clean lambda-weights

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/hybridserve run --config configs/default.yaml

simulate: $(STAMP)
	$(BIN)/hybridserve simulate --config configs/default.yaml --trace wits \
	  --policies vm-reactive,lambda-only,spock,mark,oracle,hybrid --slo-ms 300 --out out/wits

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

# The Lambda image's weights folder (Dockerfile.lambda's default WEIGHTS_DIR; empty is fine):
# `make lambda-weights WEIGHTS=/path/to/params` also copies the <variant>.params files there.
LAMBDA_WEIGHTS_DIR ?= out/lambda-weights
lambda-weights:
	mkdir -p $(LAMBDA_WEIGHTS_DIR)
	$(if $(WEIGHTS),cp $(WEIGHTS)/*.params $(LAMBDA_WEIGHTS_DIR)/)

clean:
	rm -rf $(VENV) out .pytest_cache
