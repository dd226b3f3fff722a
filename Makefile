# The README's two commands: `make demo` (main job) and `make test` (the suite). Both set up first.
PY ?= python3
# pytest workers: most live tests wait on real time (scrapes, windows, pod start-up), so more than the cores
TEST_WORKERS ?= 3

.PHONY: setup demo test lint unit
.setup-done: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
setup: .setup-done

demo: .setup-done
	autoscaler demo

lint: .setup-done
	ruff check autoscaler tests benchmarks
	mypy
	mypy benchmarks
	$(PY) -m autoscaler.tools.check_layers

test: lint
	$(PY) -m pytest -q -n $(TEST_WORKERS)
