# One place for the set-up, run and test commands the README shows.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint selftest package model model-tiny clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	# torchvision (for spandrel) needs a matching torch: install the pair first, then the project
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/desktop-app

test: $(STAMP)
	$(PY) -m ruff check desktop_app tests packaging
	QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 $(PY) -m pytest -q

selftest: $(STAMP)
	$(VENV)/bin/desktop-app selftest

# The Linux bundle, .tar.gz and .deb in dist/, and a packaging report (README, "Packaging")
package: $(STAMP)
	$(PY) -m pip install --quiet -e ".[package]"
	$(PY) packaging/build_linux.py

# Rebuild the embedded default model (hours of CPU, resumable; see packaging/model_recipe/build.py)
model: $(STAMP)
	$(PY) packaging/model_recipe/build.py all

clean-venv:
	rm -rf $(VENV)
