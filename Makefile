# Every target sets up .venv (pinned by constraints.txt) when it is missing or stale.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The torch-free runtime environment (requirements-runtime.txt), where tests/torch_free runs too.
RUNTIME_VENV := .venv-runtime
RUNTIME_STAMP := $(RUNTIME_VENV)/.installed
RUNTIME_EXPORTS := runs/runtime-exports

.PHONY: demo test test-runtime chromium lint bench fuzz clean reliability mutate

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m onestage demo

test: $(STAMP) chromium
	$(BIN)/python -m pytest
	$(MAKE) test-runtime

$(RUNTIME_STAMP): requirements-runtime.txt constraints.txt
	test -x $(RUNTIME_VENV)/bin/python || $(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RUNTIME_VENV)/bin/python -m pip install --quiet -r requirements-runtime.txt \
		-c constraints.txt pytest hypothesis
	touch $(RUNTIME_STAMP)

# The runtime environment as the README installs it (the requirements, then onestage without
# its dependencies), checked to hold no torch; the torch environment exports the files its
# tests read.
test-runtime: $(STAMP) $(RUNTIME_STAMP)
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --no-deps --force-reinstall .
	! $(RUNTIME_VENV)/bin/python -c "import torch" 2>/dev/null
	mkdir -p $(RUNTIME_EXPORTS)
	$(BIN)/python -m onestage export --weights seed_animals --out $(RUNTIME_EXPORTS)/model.onnx
	$(BIN)/python -m onestage export --weights seed_animals --format openvino \
		--out $(RUNTIME_EXPORTS)/model.xml
	$(BIN)/python -m onestage export --weights seed_animals --nms \
		--out $(RUNTIME_EXPORTS)/model_nms.onnx
	ONESTAGE_EXPORTS=$(RUNTIME_EXPORTS) $(RUNTIME_VENV)/bin/python -m pytest tests/torch_free

# The browser test of `onestage serve` (tests/serve/test_server.py) needs Chromium, and fails
# without it: Debian's package is installed when missing, as root or through `sudo -n`.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser test" >&2; \
		if [ "$$(id -u)" -eq 0 ]; then sudo=; else sudo="sudo -n"; fi; \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || { \
			echo "could not install chromium (apt-get as root or with sudo -n): install it" >&2; \
			exit 1; }; \
	fi

reliability: $(STAMP)
	ONESTAGE_KILLS=24 $(BIN)/python -m pytest tests/reliability -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/synthetic_throughput.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/train_profile.py
	$(BIN)/python benchmarks/eval_overhead.py --weights seed_animals
	$(BIN)/python benchmarks/seed_animals.py --recipe fast --images 12000
	$(BIN)/python benchmarks/architectures.py --images 12000
	$(BIN)/python benchmarks/inference_latency.py
	$(BIN)/python benchmarks/serve_load.py

# Every reader fuzzed with 2,000+ cases (tests/fuzz; `make test` runs a short version).
fuzz: $(STAMP)
	mkdir -p runs/fuzz
	rm -f runs/fuzz/report.jsonl
	ONESTAGE_FUZZ_CASES=2000 ONESTAGE_FUZZ_REPORT=runs/fuzz/report.jsonl \
		$(BIN)/python -m pytest tests/fuzz; status=$$?; \
		$(BIN)/python tests/fuzz/summary.py runs/fuzz/report.jsonl; exit $$status

# Mutation testing of the core maths and wiring (mutmut; the modules and their tests are in
# pyproject's [tool.mutmut]); then the score of each module (TESTING.md). One thread per test
# process: a forked child of a process whose OpenMP pool is running hangs.
mutate: $(STAMP)
	rm -rf mutants
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/mutmut run --max-children 2
	$(BIN)/python tests/mutation_score.py

clean:
	rm -rf $(VENV) $(RUNTIME_VENV) runs mutants
