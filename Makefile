# Herald: `make run` serves Herald with demo data; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi

.PHONY: run test test-pg bench lint chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the requirement files change, so a second run starts in seconds.
$(VENV)/.stamp-runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.stamp-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.stamp-runtime

run: $(VENV)/.stamp-runtime
	$(FLASK) up

chromium:
	@bash tests/browser/ensure_chromium.sh

test: $(VENV)/.stamp-dev chromium
	$(BIN)/pytest

# The same suite against PostgreSQL (a throwaway database on that server).
test-pg: $(VENV)/.stamp-dev chromium
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres} $(BIN)/pytest

bench: $(VENV)/.stamp-dev
	$(BIN)/pytest -m bench -s tests/bench

# Lint (rules in pyproject.toml) and check the formatting without changing a file.
lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) instance
