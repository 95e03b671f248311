# The two commands a new user types: `make train` and `make test`. Both create .venv when it is missing.
PY      := .venv/bin/python
STAMP   := .venv/.installed
TORCH   := torch==2.13.0

.PHONY: install train test test-full lint bench clean sweep report dashboard zoo results

install: $(STAMP)

# torch is installed first, pinned, so that resolving the project never pulls a CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# extra overrides with ARGS, e.g. make train ARGS="trainer.max_steps=1000"
train: $(STAMP)
	$(PY) train.py $(ARGS)

# The reference packages some tests compare with: fastMRI's metrics and masks. fastmri without its
# dependencies (they would pull torchvision and another torch); its own imports need pandas and runstats.
REFS    := .venv/.test-references
$(REFS): $(STAMP)
	$(PY) -m pip install --quiet pandas runstats
	$(PY) -m pip install --quiet --no-deps fastmri==0.3.0
	touch $(REFS)

test: $(STAMP) $(REFS)
	$(PY) -m pytest -q

test-full: $(STAMP) $(REFS)
	$(PY) -m pytest -q -m ''

lint: $(STAMP)
	$(PY) -m ruff check unfolded tests benchmarks train.py

# Optuna search (docs/SWEEPS.md); extra overrides with ARGS, e.g. make sweep ARGS="hydra.sweeper.n_trials=50"
sweep: $(STAMP)
	$(PY) train.py hparams_search=optuna $(ARGS)

# compare.png + compare.html of a run or multirun folder: make report DIR=logs/train/multiruns/<date>_<time>
report: $(STAMP)
	@test -n "$(DIR)" || (echo "usage: make report DIR=<run or multirun folder>" && exit 2)
	$(PY) -m unfolded.training.compare $(DIR)

# browse an Optuna study: make dashboard DIR=<sweep folder> (needs `pip install optuna-dashboard`)
dashboard: $(STAMP)
	@test -n "$(DIR)" || (echo "usage: make dashboard DIR=<sweep folder with optuna.db>" && exit 2)
	.venv/bin/optuna-dashboard sqlite:///$(abspath $(DIR))/optuna.db

# retrain the shipped models (unfolded/zoo/*.safetensors; about an hour on 2 CPU cores), print the README's table
zoo: $(STAMP)
	$(PY) -m unfolded.training.zoo $(NAMES)

# rerun the runs behind the result tables of README.md and docs/ and rewrite them (make results TABLES=mri)
results: $(STAMP)
	$(PY) -m unfolded.training.tables $(TABLES)

bench: $(STAMP)
	cd benchmarks && ../$(PY) run_all.py

clean:
	rm -rf .venv outputs logs .pytest_cache
