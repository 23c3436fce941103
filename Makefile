# Everything runs in the project's own virtual environment (.venv/), created with the interpreter
# PY names: a stock distribution's externally managed Python (PEP 668) is never touched.
PY ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
OUT ?= out

.PHONY: install demo test test-fast bench bench-fleet bench-calibrate bench-transfer bench-mutations docs lab-kernels clean

# The stamp is newer than pyproject.toml once the environment matches it; a changed pyproject
# refreshes it, a second run is a no-op.
$(VENV)/.installed: pyproject.toml
	@test -x $(VPY) || $(PY) -m venv $(VENV) || { \
		echo "could not create $(VENV) with $(PY): on Debian/Ubuntu install python3-venv"; exit 1; }
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

# Triage the real defrag_mode bailout capture: HTML report and plots under out/, verdict printed.
demo: install
	$(VPY) -m analyzer.cli triage sample_logs/lab-6.16.3-defrag1 --format html \
		--output $(OUT)/lab-6.16.3-defrag1.html --plots $(OUT)/plots
	@echo "report: $(OUT)/lab-6.16.3-defrag1.html"

# one test process per core (pytest-xdist): the lab's QEMU boots and the model's fits overlap
test: install
	$(VPY) -m pytest -q -n auto

test-fast: install
	$(VPY) -m pytest -q -n auto -m "not slow"

bench: install
	$(VPY) bench/run.py

# one host calibrated at the default budget (real lab bundles) and parameter recovery
bench-calibrate: install
	$(VPY) bench/calibrate_bench.py

# a fit of one real lab run carried to the others in the repository (docs/model.md, Transfer)
RUNS := tests/fixtures/lab-runs
bench-transfer: install
	$(VPY) bench/transfer_bench.py $(RUNS)/default $(RUNS)/netdev $(RUNS)/mfk65536 \
		$(RUNS)/wsf500 $(RUNS)/sock4 sample_logs/lab-6.16.3-defrag1 \
		sample_logs/lab-6.16.3-defrag1-mmtriage-lab sample_logs/lab-7.3.4-defrag1-mmtriage-lab \
		sample_logs/lab-6.16.3-defrag0 --params $(RUNS)/params-default.json

# 10,000 synthetic bundles through ingest and the report (about 6 minutes here)
bench-fleet: install
	$(VPY) bench/fleet_bench.py --bundles 10000

# the parser's mutation properties with many random examples
bench-mutations: install
	$(VPY) bench/mutations.py 5000

docs: install
	$(VPY) docs/gen_cli.py

clean:
	rm -rf $(OUT) .bench .pytest_cache .hypothesis

# Debian kernel builds for the lab (private apt configuration; see scripts/get-kernel.sh)
lab-kernels:
	scripts/get-kernel.sh 6.16.3+deb13 7.3.4+deb13
