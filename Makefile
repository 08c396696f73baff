# Every target calls the same scripts CI runs (.ci/run -> make test).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export OPENBLAS_NUM_THREADS := 1
export PYTHONUNBUFFERED := 1

.PHONY: install lock demo serve up test lint bench docs clean

# Installs exactly the locked versions (hashes checked); pyproject.toml keeps the ranges for
# people who install Sluice as a library. `make lock` re-resolves within those ranges.
$(BIN)/.installed: pyproject.toml requirements.lock tests/reference-requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	# the tests' reference implementations (obp): without the dependencies they declare
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r tests/reference-requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

install: $(BIN)/.installed

lock: install  ## re-resolve requirements.lock: the newest releases within pyproject's ranges
	$(BIN)/python -m pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python $(BIN)/python \
		--custom-compile-command "make lock" -o requirements.lock -q

demo: install  ## generate a history, run the pipeline flow, serve and query the API
	$(BIN)/sluice demo

serve: install  ## the API in the foreground on SLUICE_PORT (default 8000)
	$(BIN)/sluice serve

up: install  ## Prefect server (UI :4200) + scheduled deployments + the API
	$(BIN)/sluice up

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/sqlfluff lint dbt_project/models --dialect duckdb

# the suite in TEST_WORKERS processes (pytest-xdist; a test file stays in one), then the few
# tests marked serial (they change the repository's dbt project) on their own
TEST_WORKERS ?= 2
test: install lint  ## ruff, mypy, sqlfluff, then pytest
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not serial"
	$(BIN)/pytest -q -m serial

bench: install
	$(BIN)/python benchmarks/run.py

docs: install  ## docs/report.png: a small pipeline with an experiment and exploration, drawn by chromium
	$(BIN)/python docs/make_report_png.py

clean:
	rm -rf data mlflow/mlflow.db mlflow/artifacts dbt_project/target dbt_project/logs
