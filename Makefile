# Set-up and main commands. `make demo` and `make test` work on a fresh clone: they create
# .venv and install the four distributions (editable) with their dependencies on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nextgpt-installed
PIP := $(BIN)/python -m pip
PACKAGES := core/pyproject.toml plugins/image/pyproject.toml plugins/audio/pyproject.toml plugins/video/pyproject.toml \
	examples/nextgpt-3d/pyproject.toml examples/toy_world/pyproject.toml

.PHONY: install demo test lint bench clean

install: $(STAMP)

# torch and torchvision first, as their own step (pinned builds; see README "Install").
# ImageBind's model code (imagebind-unofficial) comes with the modality plugins' dependencies.
# The web demo's browser test drives Debian's Chromium and its driver: installed here when
# missing and this is a Debian-like system run as root (elsewhere the test says what to install).
$(STAMP): $(PACKAGES) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	command -v chromedriver >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } || \
		echo "note: no chromedriver; the web demo's browser test will be skipped (install chromium and chromium-driver)"
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e "core[train,dev]" -e plugins/image -e "plugins/audio[stable-audio]" -e plugins/video
	$(PIP) install -q -e examples/nextgpt-3d -e examples/toy_world   # example plugin, synthetic world
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nextgpt demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) outputs
