"""instantiate → fit → test, from a composed Hydra configuration (what `train.py` runs)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf

from unfolded.solvers.cg import reset_warnings

from .building import build, build_model, build_physics  # noqa: F401  (re-exported)
from .callbacks import ValidateAtEnd
from .checks import check_checkpoint, check_config, to_container
from .errors import ConfigError
from .metrics import interior_margin
from .operators import check_generator, physics_with
from .physics_bank import PhysicsBank

log = logging.getLogger(__name__)


def check_compatible(model: torch.nn.Module, physics: PhysicsBank, cfg: DictConfig) -> None:
    """Let the model meet the physics once, on a noiseless measurement of one training-size image, so that
    a model/physics mismatch (e.g. e2e-varnet without MRI, complex models on real images) is the model's
    own one-line error at start-up, not a traceback mid-training. The RNG state is left as it was."""
    data = cfg.get("data") or {}
    if not (data.get("channels") and data.get("crop_size")) or not hasattr(physics, "example"):
        return  # (measured data have no simulated example: their physics is per slice)
    size = (int(data.channels), int(data.crop_size), int(data.crop_size))
    op = physics.example(size)
    _check_interior(op, size, "physics")
    with torch.no_grad(), torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a solve of an untrained model may not converge: not the point here
        try:
            model(op.A(torch.zeros(1, *size)), op)
        except (ValueError, TypeError) as e:
            msg = str(e).strip().splitlines()
            raise ConfigError(f"algo={cfg.algo.get('_target_')} cannot work with physics="
                              f"{cfg.physics.get('_target_')}: {msg[-1] if msg else type(e).__name__}") from None
        finally:
            if getattr(model, "solver_log", None) is not None:
                model.solver_log.reset()
            reset_warnings()  # so that training's first unconverged solve at each site still warns


def _check_interior(op, size: tuple[int, int, int], what: str) -> None:
    mh, mw = interior_margin(op, (1, *size))
    if 2 * mh >= size[1] or 2 * mw >= size[2]:  # the interior loss and metrics would be empty
        raise ConfigError(f"{what} leaves no interior in the {size[1]}x{size[2]} training crops: its output is "
                          f"{mh}x{mw} pixels smaller (a valid blur crops the filter size - 1 on each side); use "
                          f"data.crop_size > {2 * max(mh, mw)} or a smaller filter")


def check_drawn_operators(module, physics: PhysicsBank, cfg: DictConfig) -> None:
    """A physics generator (module.physics_generator) and the cells of a test grid (module.test_grid) must fit
    the physics: each is tried once, on an image of the training crops' (generator) or the evaluation
    images' (grid) size, so that a mismatch is a one-line start-up error."""
    data = cfg.get("data") or {}
    if not (data.get("channels") and data.get("crop_size")):
        return
    crop = (int(data.channels), int(data.crop_size), int(data.crop_size))
    target = cfg.physics.get("_target_")
    generator = getattr(module.simulator, "generator", None)
    if generator is not None:
        try:
            drawn = check_generator(generator, physics.example(crop), crop)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"module.physics_generator does not fit physics={target}: {e}") from None
        _check_interior(drawn, crop, "module.physics_generator")
    grid = getattr(module, "test_grid", None)
    if grid is not None and not hasattr(physics, "example"):
        raise ConfigError(f"module.test_grid needs simulated measurements; physics={target} measures real data")
    if grid is not None:
        side = int(data.get("eval_size") or data.crop_size)
        size = (int(data.channels), side, side)
        for cell in grid.cells():
            try:
                with torch.no_grad():
                    physics_with(physics.example(size), cell.params).A(torch.zeros(1, *size))
            except (ValueError, TypeError) as e:
                raise ConfigError(f"module.test_grid cell {cell.name} does not fit physics={target}: {e}") from None


def build_module(cfg: DictConfig, model, physics) -> pl.LightningModule:
    module = build(cfg.module, "module", model=model, physics=physics)
    module.run_config = to_container(cfg)  # not through instantiate: it would build its _target_ nodes
    return module


def _collection(node, what: str) -> list:
    if not node:
        return []
    return [build(sub, f"{what}.{name}") for name, sub in node.items() if sub is not None and "_target_" in sub]


def _finish_wandb() -> None:
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except ImportError:  # pragma: no cover
        pass


def run(cfg: DictConfig) -> tuple[float | None, dict]:
    """Train and/or test; returns (value of `optimized_metric`, all final metrics).

    Raises `ConfigError` for a configuration that cannot run and `TrainingDiverged` when the loss became
    NaN/inf (the checkpoints on disk are then the last good ones): a sweep marks such a trial failed.
    """
    check_config(cfg)
    OmegaConf.resolve(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)

    datamodule = build(cfg.data, "data")
    physics = build_physics(cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_model(cfg)
    for w in caught:
        log.warning("%s", w.message)
    check_compatible(model, physics, cfg)
    module = build_module(cfg, model, physics)
    check_drawn_operators(module, physics, cfg)
    try:  # built now so that a bad optimizer/scheduler value is a start-up error, not one from inside fit
        module.configure_optimizers()
    except (ValueError, TypeError) as e:
        raise ConfigError(f"cannot build module.optimizer/scheduler: {type(e).__name__}: {e}") from None
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is not None:
        check_checkpoint(str(ckpt_path), module)

    callbacks = [*_collection(cfg.get("callbacks"), "callbacks"), ValidateAtEnd()]
    loggers = _collection(cfg.get("logger"), "logger")
    trainer: pl.Trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    if trainer.world_size > 1 and trainer._accelerator_connector.use_distributed_sampler:
        raise ConfigError(f"trainer.use_distributed_sampler must be false with {trainer.world_size} processes: "
                          f"the data module shares the images between processes itself (see trainer=ddp)")
    if trainer.world_size > 1 and hasattr(datamodule, "check_world_size"):
        datamodule.check_world_size(trainer.world_size)
    if trainer.world_size > 1 and getattr(module, "on_nonfinite_loss", None) == "skip":
        # a step without backward leaves DDP's gradient reduction waiting
        raise ConfigError("module.on_nonfinite_loss=skip works in a single process only; use stop with "
                          f"{trainer.world_size} processes")
    for lg in loggers:
        if hasattr(lg, "log_hyperparams"):
            lg.log_hyperparams(to_container(cfg))

    metrics: dict = {}
    try:
        if cfg.get("train", True):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        if cfg.get("test", True):
            if cfg.get("train", True):
                best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
                test_ckpt = best if best and Path(best).is_file() else None
                if test_ckpt:
                    log.info("testing the best checkpoint %s", test_ckpt)
            else:
                test_ckpt = ckpt_path
            trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, verbose=False)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    finally:
        _finish_wandb()

    name = cfg.get("optimized_metric")
    value = None
    if name:
        ckpt_cb = trainer.checkpoint_callback
        if ckpt_cb is not None and ckpt_cb.monitor == name and ckpt_cb.best_model_score is not None:
            value = float(ckpt_cb.best_model_score)
        elif name in metrics:
            value = metrics[name]
    # with DDP-spawn the training ran in child processes: the step count comes back in the metrics
    metrics["global_step"] = max(module.trained_steps, int(metrics.pop("trainer/global_step", 0)))
    return value, metrics
