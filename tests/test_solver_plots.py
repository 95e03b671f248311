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


def test_counts_per_direction_and_solver_which_solves_reached_their_tolerance(tmp_path):
    from types import SimpleNamespace

    from unfolded.optim import DEQConfig

    cb = DEQResidualPlot(output_dir=str(tmp_path), every_n_steps=1)
    model = SimpleNamespace(DEQ=DEQConfig(tol_forward=1e-3, tol_backward=1e-3), deq_stats={})
    module = SimpleNamespace(model=model)
    steps = [("anderson", True, "gmres", True), ("anderson", False, "gmres", True), ("broyden", True, "phantom", None)]
    for step, (fwd, fok, bwd, bok) in enumerate(steps, start=1):
        model.deq_stats = {"forward": {"solver": fwd, "converged": fok, "residuals": [1e-1, 1e-4]},
                           "backward": {"solver": bwd, "converged": bok, "residuals": [1e-2, 1e-4] if bok else []}}
        cb.on_train_batch_end(SimpleNamespace(global_step=step), module, None, None, 0)
    assert cb.counts == {("forward", "anderson"): [1, 2], ("backward", "gmres"): [2, 2], ("forward", "broyden"): [1, 1]}
    assert cb.reached("forward") == "anderson 1/2, broyden 1/1"
    assert cb.reached("backward") == "gmres 2/2"  # phantom solves nothing: not counted
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, global_step=3, loggers=[],
                              default_root_dir=str(tmp_path))
    cb.on_validation_epoch_end(trainer, module)
    assert (tmp_path / "deq_residuals.png").stat().st_size > 5000
