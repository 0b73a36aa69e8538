# Set-up and the main tasks. Everything runs inside $(VENV), created on first use.
#   make train [ARGS="key=value ..."]   install, then train and test on Multi30k (default config)
#   make test  [PYTEST_ARGS=...]        install, then run the test suite
#   make docs                           regenerate the generated tables of docs/ (the attention catalogue)
# TORCH_SPEC picks the torch build installed first (default: the CPU wheel pinned here), e.g.
#   make train TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install train translate test docs clean
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(TORCH_SPEC)
	$(VENV)/bin/pip install -e ".[dev]"
	touch $@

train: install
	$(VENV)/bin/python -m seq2seq_lit.train $(ARGS)

test: install
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

docs: install
	$(VENV)/bin/python -c 'from seq2seq_lit.modules.attention.catalogue import write_page; write_page("docs/attention_catalogue.md")'

clean:
	rm -rf $(VENV) logs
