# Two commands do all set-up: `make demo` and `make test` create .venv when it is
# missing and install what the project needs, then run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.swapline-installed
PIP    := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: all install test demo extension bench clean

all: test

install: $(STAMP)

$(STAMP): requirements/engine.txt requirements/identity.txt requirements/dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) --no-deps mediapipe==0.10.21
	$(PIP) -r requirements/engine.txt -r requirements/identity.txt -r requirements/dev.txt
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) tools/demo.py $(if $(SRC),--source $(SRC)) $(if $(DST),--destination $(DST)) $(if $(MINUTES),--minutes $(MINUTES))

extension: $(STAMP)
	$(PY) tools/build_extension.py

bench: $(STAMP)
	$(PY) -m engine bench

clean:
	rm -rf $(VENV) build dist addon/wheels demo_out
