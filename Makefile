PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || (echo "Python 3.11+ required" && exit 1)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m billing_project.launcher run

test: $(STAMP)
	$(PY) -m billing_project.launcher test $(ARGS)

clean:
	rm -rf $(VENV) .local staticfiles

schema: $(STAMP)
	$(PY) -m billing_project.launcher manage spectacular --format openapi-json --validate --fail-on-warn --file docs/openapi.json
