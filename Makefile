# Two commands a new user needs: `make site` builds _site/, `make test` runs every test.
# Each creates the virtual environment it needs from pyproject.toml (python3 and make suffice).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The source texts that quotes are checked against (see evidence.toml), where they are: set to a
# folder that does not exist, EVIDENCE_SOURCE_TEXTS is an error (a typo would turn the checks off).
export EVIDENCE_SOURCE_TEXTS ?= $(if $(wildcard ../shared/seeds/.),$(abspath ../shared/seeds),)

.PHONY: site test check lint schema clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

site: $(STAMP)
	$(BIN)/python build.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench build.py

check: lint test

schema: $(STAMP)
	$(BIN)/evidence schema

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf _site .pytest_cache build *.egg-info src/*.egg-info
