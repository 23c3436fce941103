PY ?= python3
PIP ?= $(PY) -m pip

.PHONY: install demo test test-fast bench clean

install:
	$(PIP) install -q -e '.[dev]'

demo: install
	$(PY) -m analyzer.cli parse sample_logs/lab-6.16.3-defrag1 --format table
	$(PY) -m analyzer.cli proc sample_logs/lab-6.16.3-defrag1/snapshots/20261125T200043Z/pagetypeinfo --format table

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) bench/run.py

clean:
	rm -rf out .bench .pytest_cache .hypothesis
