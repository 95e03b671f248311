# The two commands a new user types: `make train` and `make test`. Both create .venv when it is missing.
PY      := .venv/bin/python
STAMP   := .venv/.installed
TORCH   := torch==2.13.0

.PHONY: install train test test-full lint bench clean

install: $(STAMP)

# torch is installed first, pinned, so that resolving the project never pulls a CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

train: $(STAMP)
	$(PY) train.py

test: $(STAMP)
	$(PY) -m pytest -q

test-full: $(STAMP)
	$(PY) -m pytest -q -m ''

lint: $(STAMP)
	$(PY) -m ruff check unfolded tests benchmarks train.py

bench: $(STAMP)
	cd benchmarks && ../$(PY) run_all.py

clean:
	rm -rf .venv outputs logs .pytest_cache
