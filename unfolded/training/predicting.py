"""What `predict.py` does: a trained model applied to a user's files.

- measurements (default): each file is y; `<output>/<stem>.npy|png` is x̂ (for a valid blur, the image
  size: the measurement plus the filter size − 1);
- fastMRI volumes (`.h5`, for a model trained with `physics=fastmri`): `<output>/reconstructions/<file>.h5`,
  scored with fastMRI's volume metrics when the file has a target (`predict_fastmri.py`; `simulate` does
  not apply: a fully sampled file is undersampled with the model's mask);
- `simulate=true`: each file is a clean image x; y is simulated with the model's physics (noise seeded as
  the training's test split draws it), and the model is scored beside Aᵀy, Tikhonov and the run's TV/BM3D
  baselines (`classical.py`; settings tuned on these images: their best case) in a table, `metrics.json` and
  `report.png`.
A file that cannot be read or does not fit the physics is one line naming it; the others still run, and
the exit status says how many failed.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from . import baselines, classical, evaluation, predict_fastmri, report
from .baseline_cache import BaselineCache
from .checks import physics_measures_kspace
from .errors import ConfigError
from .inference import load
from .logs import echo
from .metrics import interior_margin
from .predict_io import input_files, read_input, write_output

log = logging.getLogger(__name__)


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[-1] if lines else ''}" if not isinstance(e, ValueError) else lines[-1]


def run(cfg: DictConfig) -> int:
    """Reconstruct every input; returns the number of files that failed."""
    overrides = OmegaConf.to_container(cfg.physics, resolve=True) if cfg.get("physics") else None
    rec = load(cfg.ckpt_path, device=cfg.device, physics=overrides)
    files = input_files(cfg.input)
    out = Path(str(cfg.output))
    kspace = physics_measures_kspace(rec.config["physics"])
    channels = int(rec.channels or 1)
    log.info("model %s (step %s, start x0 = %s), %d input file(s) -> %s", cfg.ckpt_path,
             rec.info.get("global_step"), rec.init, len(files), out)
    volumes = predict_fastmri.VolumePredictor(rec, cfg.device) if predict_fastmri.is_fastmri_model(rec) else None
    simulated, scored, failed = [], {}, 0
    for i, path in enumerate(files):
        try:
            if volumes is not None or path.suffix.lower() == predict_fastmri.SUFFIX:
                if volumes is None or path.suffix.lower() != predict_fastmri.SUFFIX:
                    raise ValueError("a fastMRI .h5 volume needs a model trained with physics=fastmri" if volumes
                                     is None else "a model trained with physics=fastmri reconstructs fastMRI .h5 "
                                     "volumes")
                written, metrics, info = volumes.predict(path, out)
                if metrics is not None:
                    scored[path.name] = metrics
                log.info("[%d/%d] %s (%s) -> %s (%d slices, %s)%s", i + 1, len(files), path.name,
                         "own mask" if info.has_mask else "the model's mask", written, info.num_slices,
                         "x".join(map(str, info.target_shape)), "" if metrics is None else
                         "  NMSE {nmse:.4f} PSNR {psnr:.2f} SSIM {ssim:.4f}".format(**metrics["model"]))
                continue
            with torch.no_grad():
                if cfg.simulate:
                    x = read_input(path, channels, kspace=False)[None].to(cfg.device)
                    physics, y = rec.simulate(x, cfg.get("seed"), first_index=i)
                    x_hat, per_iter = rec.reconstruct(y, physics, x)
                    simulated.append((path.stem, x, y, physics, x_hat, per_iter))
                else:
                    y = read_input(path, channels, kspace)[None].to(cfg.device)
                    x_hat = rec(y)
            write_output(out, path.stem, x_hat[0])
            log.info("[%d/%d] %s -> %s.npy/.png (%s)", i + 1, len(files), path.name, path.stem,
                     "x".join(str(n) for n in x_hat.shape[-2:]))
        except (ValueError, RuntimeError, OSError) as e:
            failed += 1
            log.error("[%d/%d] %s: not reconstructed: %s", i + 1, len(files), path.name,
                      _one_line(e).removeprefix(f"{path}: "))  # the file is named once
    if simulated:
        score(rec, simulated, out)
    if scored:
        predict_fastmri.report(scored, out)
    if failed:
        log.error("%d of %d file(s) failed", failed, len(files))
    return failed


def score(rec, simulated: list, out: Path) -> None:
    """The model beside Aᵀy, Tikhonov, TV and BM3D on the simulated measurements: table, metrics.json,
    report.png."""
    t = {**baselines.TIKHONOV_DEFAULTS, **{k.removeprefix("tikhonov_"): v for k, v in
                                           rec.config.get("module", {}).items() if k.startswith("tikhonov_")}}
    with torch.no_grad():
        triples = [(x, y, p) for _, x, y, p, _, _ in simulated]
        lam, _, _ = baselines.tune_tikhonov(triples, t["lambdas"], t["refine"], t["tol"], t["max_iter"])
        # TV and BM3D as in the training's test (classical.py), tuned on these images too, cached as there
        # (the default cache folder: a model file never chooses where files are written)
        cache = BaselineCache.of("default")
        tik = baselines.tikhonov_solver(lam, t["tol"], t["max_iter"])
        settings = classical.tune(triples, rec.config.get("module", {}).get("baselines", ["tv", "bm3d"]), cache, tik,
                                  {"tikhonov_lambda": lam, "tol": t["tol"], "max_iter": t["max_iter"]})
        names = [s[0] for s in simulated]
        records = []
        for i, (_, x, y, physics, x_hat, per_iter) in enumerate(simulated):
            recs = {"model": x_hat, **baselines.baseline_reconstructions(physics, y, x.shape, lam, t["tol"],
                                                                         t["max_iter"])}
            more, extra = classical.reconstructions(physics, y, settings, cache, tik)
            records += [{**r, **extra} for r in evaluation.test_records(
                [i], names, x, y, physics, {**recs, **more}, interior_margin(physics, x.shape), per_iter,
                num_report_images=3)]
    summary = evaluation.summarise(records, lam, settings)
    echo(f"simulated measurements of {len(records)} image(s); the baselines' settings chosen on these images "
         "(their best case)")
    report.print_table(records, summary)
    report.save_json(out / "metrics.json", records, summary, {}, int(rec.info.get("global_step") or 0))
    report.save_figure(out / "report.png", records, None, summary)
    log.info("metrics: %s  picture: %s", out / "metrics.json", out / "report.png")


KEYS = ("ckpt_path", "input", "output", "simulate", "seed", "device")


def check_arguments(argv: list[str]) -> list[str]:
    """The command line of predict.py, checked before Hydra starts (so that a typo is one line and makes
    no output folder). `physics.a.b=v` replaces a key of the model's stored physics, which predict.yaml
    cannot list: it goes to Hydra as a new key (`+physics.a.b=v`), and the stored physics checks it."""
    import difflib

    out = []
    for arg in argv:
        name = arg.split("=", 1)[0].lstrip("+~")
        if arg.startswith("-") or name.startswith("hydra."):
            out.append(arg)
        elif name.startswith("physics."):
            out.append("+" + arg.lstrip("+"))
        elif name in KEYS and "=" in arg:
            out.append(arg)
        else:
            meant = difflib.get_close_matches(name, KEYS, n=1, cutoff=0.6)
            sys.exit(f"config error: unknown argument {arg!r}" + (f"; did you mean {meant[0]}?" if meant else "")
                     + f"; predict.py takes {'=..., '.join(KEYS)}=... and physics.<key>=<value>")
    return out


def main(cfg: DictConfig) -> None:
    logging.captureWarnings(True)
    missing = [k for k in ("ckpt_path", "input") if OmegaConf.is_missing(cfg, k)]
    if missing:
        sys.exit(f"config error: {' and '.join(missing)} required, e.g. python predict.py ckpt_path=zoo:hqs_blur "
                 f"input=<file or folder> output=<folder>")
    try:
        failed = run(cfg)
    except ConfigError as e:
        sys.exit(f"config error: {e}")
    if failed:
        sys.exit(1)
