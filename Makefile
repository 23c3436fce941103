PY ?= python3
PIP ?= $(PY) -m pip
OUT ?= out

.PHONY: install demo test test-fast bench bench-fleet bench-calibrate docs lab-kernels clean

install:
	$(PIP) install -q -e '.[dev]'

# Triage the real defrag_mode bailout capture: HTML report and plots under out/, verdict printed.
demo: install
	$(PY) -m analyzer.cli triage sample_logs/lab-6.16.3-defrag1 --format html \
		--output $(OUT)/lab-6.16.3-defrag1.html --plots $(OUT)/plots
	@echo "report: $(OUT)/lab-6.16.3-defrag1.html"

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) bench/run.py

# one host calibrated at the default budget (real lab bundles) and parameter recovery
bench-calibrate: install
	$(PY) bench/calibrate_bench.py

# 10,000 synthetic bundles through ingest and the report (about 6 minutes here)
bench-fleet: install
	$(PY) bench/fleet_bench.py --bundles 10000

docs: install
	$(PY) docs/gen_cli.py

clean:
	rm -rf $(OUT) .bench .pytest_cache .hypothesis

# Debian kernel builds for the lab (private apt configuration; see scripts/get-kernel.sh)
lab-kernels:
	scripts/get-kernel.sh 6.16.3+deb13 7.3.4+deb13
