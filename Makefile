# dfine-studio: `make run` (install + open the demo project in the GUI), `make test` (install, ruff,
# vermin, mypy on core/ (config: pyproject [tool.mypy]), whole suite).
# Everything installs into .venv; torch is pinned to the 2.13.0 CPU wheel for dev/CI.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
DEMO   := demo_project
PROJECT ?= $(DEMO)
RUN    ?=
RESUME ?=
ARGS   ?=
SOURCE ?= $(PROJECT)/images
STAMP  := $(VENV)/.installed

# Qt's xcb/offscreen platforms need these shared libraries; installed only when missing (needs root/sudo).
# The libxcb-* set is what PySide6's libqxcb.so / libQt6XcbQpa.so link (checked with ldd by
# tests/test_system_libraries.py); without libxcb-icccm4/-keysyms1 the window never opens.
QT_SYSTEM_PACKAGES := libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0 \
	libx11-xcb1 libxcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
	libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-util1 libxcb-xfixes0 \
	libxcb-xkb1
# Only for the tests: a virtual X server to start the real window in (tests/test_gui_real_window.py).
TEST_SYSTEM_PACKAGES := xvfb xdotool

.PHONY: install run test test-all train export infer bench installer demo system-deps clean

system-deps:
	@missing=""; for p in $(QT_SYSTEM_PACKAGES) $(EXTRA_SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Qt system libraries:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	$(MAKE) --no-print-directory system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[export,dev]"
	touch $(STAMP)

install: $(STAMP)

$(DEMO)/project.yaml: | $(STAMP)
	$(VENV)/bin/dfine demo $(DEMO)

demo: $(DEMO)/project.yaml

run: $(STAMP) $(DEMO)/project.yaml
	$(VENV)/bin/dfine-studio $(PROJECT)

test: $(STAMP)
	@$(MAKE) --no-print-directory system-deps EXTRA_SYSTEM_PACKAGES="$(TEST_SYSTEM_PACKAGES)"
	$(VENV)/bin/ruff check .
	$(VENV)/bin/vermin --target=3.10- --no-tips --violations --quiet core app benchmarks
	$(VENV)/bin/mypy core
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

test-all: $(STAMP)
	@$(MAKE) --no-print-directory system-deps EXTRA_SYSTEM_PACKAGES="$(TEST_SYSTEM_PACKAGES)"
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m ""

train: $(STAMP) $(DEMO)/project.yaml
	$(VENV)/bin/dfine train $(PROJECT) $(if $(RUN),--name $(RUN)) $(if $(RESUME),--resume) $(ARGS)

export: $(STAMP) $(DEMO)/project.yaml   ## ONNX + OpenVINO FP32/FP16/INT8 of the newest run (or RUN=name) + report.json
	$(VENV)/bin/dfine export $(PROJECT)$(if $(RUN),/runs/$(RUN)) --formats onnx,openvino --precision fp32,fp16,int8

infer: $(STAMP) $(DEMO)/project.yaml    ## overlays + results.json for SOURCE with the project's newest export
	$(VENV)/bin/dfine infer $(PROJECT)/exports/$(or $(RUN),$(notdir $(lastword $(wildcard $(PROJECT)/exports/*)))) $(SOURCE) --save $(PROJECT)/infer_out --conf 0.5

bench: $(STAMP) $(DEMO)/project.yaml    ## paper-protocol benchmark of the newest run (RUN=name), or size S latency-only without one
	@if [ -n "$(RUN)" ] || ls -d $(PROJECT)/runs/*/ >/dev/null 2>&1; then \
		$(VENV)/bin/dfine bench $(PROJECT)/runs/$(or $(RUN),$(notdir $(patsubst %/,%,$(lastword $(wildcard $(PROJECT)/runs/*/))))) --project $(PROJECT) --out benchmarks/out; \
	else \
		$(VENV)/bin/dfine bench --random-size s --project $(PROJECT) --out benchmarks/out; \
	fi

installer: $(STAMP)
	$(PIP) install -q ".[installer]"
	$(VENV)/bin/pyinstaller --noconfirm build_installer.spec
	dist/dfine-studio/dfine-studio --version

clean:
	rm -rf build dist .pytest_cache
