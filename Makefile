# Quickstart: `make bench` and `make test`. Each creates .venv if missing and installs the pinned
# dependencies (constraints.txt) before doing its job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BENCH_ARGS ?=
PYTEST_ARGS ?=
# Tests run in parallel, one worker per core (pytest-xdist), each file whole on one worker (loadfile): the Ray
# tests of test_fault_tolerance.py kill the Ray processes that appear while they run, so no two may overlap.
TEST_WORKERS ?= auto
# Source datasets: $DATA_ROOT if set; else the offline copy beside the checkout when there is one; else
# ./data (where torchvision downloads MNIST when online).
DATA_ROOT ?= $(if $(wildcard ../shared/data/MNIST/raw),../shared/data,./data)
export DATA_ROOT

.PHONY: bench test gpu-dry-run benchmark check-reference check-reference-long check-reference-full lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt ".[dev,ray]"
	# cifar10c's Frost corruption reads the frost photographs shipped in this wheel; the package itself
	# is never imported (it breaks next to a current setuptools), hence --no-deps.
	$(PY) -m pip install --quiet --no-deps imagecorruptions==1.1.2
	rm -rf build *.egg-info
	touch $(STAMP)

bench: $(STAMP)
	$(PY) run_bench.py $(BENCH_ARGS)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not gpu_dry_run" $(PYTEST_ARGS)

# The GPU check script (benchmarks/gpu_check.sh) run small on the CPU, every step and summary line checked:
# about a minute, so its own target, which CI runs after make test.
gpu-dry-run: $(STAMP)
	$(PY) -m pytest -m gpu_dry_run tests/test_gpu_check.py $(PYTEST_ARGS)

benchmark: $(STAMP)
	mkdir -p results/benchmarks
	$(PY) -m pytest benchmarks -q --benchmark-json=results/benchmarks/latest.json
	$(PY) benchmarks/summary.py results/benchmarks/latest.json

# Rerun a folder's records (a fresh dataset cache) and compare them bit for bit.
verify_fresh = cache=$$(mktemp -d) && $(PY) run_bench.py verify $(1) --data-root $(DATA_ROOT) --cache-dir $$cache; \
	status=$$?; rm -rf $$cache; exit $$status

# Rerun the committed portable-numerics reference records and compare them bit for bit (a fresh cache);
# then again as a CPU of the other vendor would compute them (tests/other_cpu/other_vendor.c), where this
# machine has CPUID faulting and a C compiler.
check-reference: $(STAMP)
	$(call verify_fresh,results/portable-reference)
	@if grep -qw cpuid_fault /proc/cpuinfo 2>/dev/null && command -v cc >/dev/null; then \
		dir=$$(mktemp -d) && cc -O2 -shared -fPIC -o $$dir/other_vendor.so tests/other_cpu/other_vendor.c && \
		env -u PYTHONFAULTHANDLER LD_PRELOAD=$$dir/other_vendor.so $(PY) run_bench.py verify results/portable-reference \
			--data-root $(DATA_ROOT) --cache-dir $$dir/cache; status=$$?; rm -rf $$dir; exit $$status; \
	else echo "check-reference: no CPUID faulting or no C compiler here: the other-vendor check is skipped"; fi

# The long portable reference (results/portable-reference/long: full training sets, 20 epochs, well past
# the epoch where a paper-scale record parted between Intel and AMD CPUs): about 10 minutes on 2 cores.
check-reference-long: $(STAMP)
	$(call verify_fresh,results/portable-reference/long)

# A whole paper-preset cmnist record (results/portable-reference/full: ERM 0.5 %, 100 epochs): about 35 minutes.
check-reference-full: $(STAMP)
	$(call verify_fresh,results/portable-reference/full)

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) cache build *.egg-info .pytest_cache
