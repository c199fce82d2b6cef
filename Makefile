# Two commands do everything on a fresh Debian 12 machine (as root):
#   make demo   -- set up, then run every program on the bundled example data into demo/
#   make test   -- set up, then run the whole test suite
# Set-up: Debian's python3-dials when DIALS is missing, a virtualenv that sees it
# (--system-site-packages), and this package installed into the virtualenv.

SYSTEM_PYTHON := /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := python3-dials python3-venv python3-pip python3-pytest python3-jsonschema \
	python3-matplotlib python3-h5py python3-dask python3-distributed python3-jinja2 chromium \
	python3-pytest-xdist python3-msgpack
# plotly comes from PyPI (its wheel bundles the minified plotly.js; Debian's is 8.6 MB unminified)
PIP_PACKAGES := plotly==5.24.1
DEMO := dials_refl_stats/data/sim_small

.PHONY: setup test demo lint benchmark fuzz clean

setup: $(STAMP)

$(STAMP): setup.py Makefile
	@if ! $(SYSTEM_PYTHON) -c "import dials, pytest, xdist, jsonschema, matplotlib, h5py, dask, distributed, jinja2, msgpack, ensurepip, setuptools, wheel" >/dev/null 2>&1 || ! command -v chromium >/dev/null; then \
		echo "Installing DIALS and friends from Debian ($(DEBIAN_PACKAGES))"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_PACKAGES) >/dev/null; \
	fi
	$(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	@# Debian's libtbx looks for its environment under sys.prefix/lib/cctbx: point the venv at it
	@if [ -d /usr/lib/cctbx ] && [ ! -e $(VENV)/lib/cctbx ]; then ln -s /usr/lib/cctbx $(VENV)/lib/cctbx; fi
	$(BIN)/python -m pip install --quiet $(PIP_PACKAGES)
	@# PEP 660 (--use-pep517): plain console scripts that import the program, where a legacy
	@# "setup.py develop" script looks its entry point up in the metadata first (~15 ms a run)
	$(BIN)/python -m pip install --quiet --no-build-isolation --no-deps --use-pep517 -e .
	@# byte-compiled once, as pip does for a regular install (an editable one compiles at
	@# first import, never where PYTHONDONTWRITEBYTECODE is set: 30 ms of each start-up)
	$(BIN)/python -m compileall -q dials_refl_stats
	touch $(STAMP)

# pytest-xdist: the suite on both cores
TEST_WORKERS ?= 2

test: setup lint
	cd tests && ../$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) .

demo: setup
	rm -rf demo && mkdir -p demo
	cd demo && ../$(BIN)/dials.spot_size_histogram ../$(DEMO)/indexed.expt ../$(DEMO)/indexed.refl
	cd demo && ../$(BIN)/dials.spot_size_histogram ../$(DEMO)/integrated.refl \
		selection.flags=integrated_sum output.json=spot_size_histogram.integrated.json \
		output.plot=spot_size_histogram.integrated.png output.log=dials.spot_size_histogram.integrated.log
	cd demo && ../$(BIN)/dials.intensity_per_frame ../$(DEMO)/integrated.expt ../$(DEMO)/integrated.refl \
		intensity.choice=sum+prf
	cd demo && ../$(BIN)/dials.strong_reflection_positions ../$(DEMO)/integrated.expt ../$(DEMO)/integrated.refl
	cd demo && ../$(BIN)/dials.per_image_statistics ../$(DEMO)/indexed.expt ../$(DEMO)/indexed.refl
	cd demo && ../$(BIN)/dials.refl_stats ../$(DEMO)/integrated.expt ../$(DEMO)/integrated.refl
	@echo "Demo outputs in demo/:"; ls -1 demo

RUFF_VERSION := 0.17.6

lint: setup
	@$(BIN)/ruff --version 2>/dev/null | grep -q "$(RUFF_VERSION)" || \
		$(BIN)/python -m pip install --quiet "ruff==$(RUFF_VERSION)"
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Benchmarks (minutes; they build 1.1 GB tables in benchmarks/work/ on first use).
BENCH_SOURCE ?= tests/data/sim_twoexp/indexed.refl

benchmark: setup
	$(BIN)/python benchmarks/bench_programs.py --source $(BENCH_SOURCE) --repeats 3
	$(BIN)/python benchmarks/bench_reader.py --repeat 7

# Long fuzzing campaigns: every program on mutated real files (each case: a result or one
# Sorry line, nothing left behind, inputs unchanged), then the fast reader alone, runs of
# many files, experiment files of absurd geometry, and experiment files parsed both ways.
FUZZ_ITERATIONS ?= 10000

fuzz: setup
	$(BIN)/python benchmarks/fuzz_programs.py --iterations $(FUZZ_ITERATIONS) --keep fuzz-failures
	$(BIN)/python benchmarks/fuzz_reader.py --iterations $(FUZZ_ITERATIONS) --read-ahead
	$(BIN)/python benchmarks/fuzz_many_files.py --iterations $(FUZZ_ITERATIONS) --keep fuzz-failures
	$(BIN)/python benchmarks/fuzz_geometry.py --iterations $(FUZZ_ITERATIONS) --keep fuzz-failures
	$(BIN)/python benchmarks/fuzz_experiments.py --iterations $(FUZZ_ITERATIONS)

clean:
	rm -rf $(VENV) demo build *.egg-info
