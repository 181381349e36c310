# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-unit test-integration test-e2e check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## make run: set up, migrate, deploy diagrams, load demo accounts, serve everything at :8000
run: $(STAMP)
	$(BIN)/fzt run-all --host 127.0.0.1 --port 8000

## make test: set up and run the whole suite (unit, integration, e2e, browser)
test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

check: $(STAMP)
	$(BIN)/fzt bpmn check

clean:
	rm -rf $(VENV) var .pytest_cache
