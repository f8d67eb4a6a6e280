# One task runner. `make demo` and `make test` are the two set-up commands a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The local CPU build of torch: installed first so the `torch>=2.4` range is already met
# and pip never pulls the multi-GB CUDA wheels.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv demo test test-fast lint bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[export,dev,plot,ray,serve,openvino,pipeline]"
	touch $@

venv: $(VENV)/.installed

# The LiteLLM proxy for the guardrail test lives in its own venv: litellm[proxy] pins
# huggingface_hub<2, which the project's venv cannot share.
LITELLM_VENV ?= .venv-litellm
LITELLM_SPEC ?= litellm[proxy]==1.106.2

$(LITELLM_VENV)/.installed:
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install -q "$(LITELLM_SPEC)"
	touch $@

demo: venv
	$(BIN)/python -m guardcli.cli.demo

# Everything, as CI runs it (.ci/run): the LiteLLM proxy tests fail rather than skip.
# Everything, on two pytest workers (each test file on one worker): one process took 14.5-15.2
# min on 2 cores at 0.5.0, two take about half.
test: venv $(LITELLM_VENV)/.installed
	$(BIN)/python -m pytest --require-litellm -n 2 --dist loadfile

# The loop to run every minute (about one on 2 cores with the model store built; 2 min at
# 0.3.0): no test marked slow, no LiteLLM venv, two pytest workers (pytest-xdist), each file on
# one worker.
test-fast: venv
	$(BIN)/python -m pytest -m "not slow" -n 2 --dist loadfile

lint: venv
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy src
	$(BIN)/lint-imports

bench: venv
	$(BIN)/python benchmarks/run_all.py

# The docs site: regenerate the CLI reference from the Typer app, then build docs/ into site/
# (offline; --strict fails on a broken link). `$(BIN)/mkdocs serve` previews it.
docs: venv
	$(BIN)/python scripts/gen_cli_docs.py
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) $(LITELLM_VENV) build dist site src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
