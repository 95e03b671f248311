"""The DEQ residual-trace picture: written during training, with one curve per kept step."""

import pytest

from unfolded.training.config import compose
from unfolded.training.pipeline import run
from unfolded.training.solver_plots import DEQResidualPlot

QUIET = ["callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false"]
PLOT = ["callbacks.deq_residuals.every_n_steps=1"]


def test_deq_training_writes_the_residual_plot(tmp_path):
    cfg = compose(["algo=pgd", "physics=denoise", "deq=anderson", "debug=fast", "algo.max_iter=4",
                   "trainer.fast_dev_run=false", "trainer.max_steps=2", "trainer.val_check_interval=2",
                   "test=false", *PLOT, *QUIET], tmp_path)
    run(cfg)
    png = tmp_path / "deq_residuals.png"
    assert png.is_file() and png.stat().st_size > 5000
    assert not list(tmp_path.glob(".deq_residuals.png.*"))  # no temporary file left behind


def test_no_plot_without_deq(tmp_path):
    cfg = compose(["algo=pgd", "physics=denoise", "debug=fast", "algo.max_iter=2", "trainer.fast_dev_run=false",
                   "trainer.max_steps=1", "trainer.val_check_interval=1", "test=false", *PLOT, *QUIET], tmp_path)
    run(cfg)
    assert not (tmp_path / "deq_residuals.png").exists()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="every_n_steps"):
        DEQResidualPlot(every_n_steps=0)
