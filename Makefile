# The two commands a fresh Debian 12 machine needs (see README.md):
#   make serve   run Devbox on its embedded defaults (SQLite, simulated cluster)
#   make test    run the whole test suite
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: serve test lint crds

serve:
	scripts/bootstrap run
	$(VENV)/bin/devboxctl serve

test:
	scripts/bootstrap test
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m app.resources.crdgen --check k8s/crds

crds:
	$(VENV)/bin/python -m app.resources.crdgen --write k8s/crds
