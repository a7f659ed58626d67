# One place for the set-up, run and test commands the README shows.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint selftest package model model-tiny constraints clean-venv

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	# torchvision (for spandrel) needs a matching torch: install the pair first, then the project
	$(PY) -m pip install --quiet -c constraints.txt "torch==2.14.1" "torchvision==0.29.1"
	# the tested versions of everything else (constraints.txt): a new release cannot break a fresh set-up;
	# cpu-fast: OpenVINO, the embedded model's faster CPU path (tested by the suite)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,cpu-fast]"
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
	$(PY) -m pip install --quiet -c constraints.txt -e ".[package]"
	$(PY) packaging/build_linux.py

# Rebuild the embedded default model (hours of CPU, resumable; see packaging/model_recipe/build.py)
model: $(STAMP)
	$(PY) packaging/model_recipe/build.py all

# Pin what .venv holds now (after make test passed on it) as the versions a fresh set-up installs
constraints: $(STAMP)
	{ sed -n '1,3p' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^-e'; } > constraints.new
	mv constraints.new constraints.txt

clean-venv:
	rm -rf $(VENV)
