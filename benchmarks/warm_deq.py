"""Claim: the unrolled zoo model `zoo:hqs_blur` (HQS K=5, DnCNN 8x32, 2000 steps) run as a DEQ (the settings
of conf/deq/anderson.yaml) has forward and backward solves that converge, unlike an untrained denoiser.

Counts, on the 3 test images (256², simulated as training's test) and on training crops (64², batches of 8),
forward and backward solves reaching a tolerance, the iterations / VJPs used, and the PSNR of x* against the
unrolled K=5 output. `--padding replicate|reflect` changes the DnCNN convolutions' padding at inference.

    .venv/bin/python benchmarks/warm_deq.py [--tol 1e-3 1e-4] [--padding zeros replicate] [--crops 4]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import warnings

import torch
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def deq_model(rec, deq: dict, padding: str):
    from omegaconf import OmegaConf

    from unfolded.training.building import build_model

    config = copy.deepcopy(rec.config)
    config["algo"]["DEQ"] = deq
    model = build_model(OmegaConf.create(config))
    model.load_state_dict(rec.model.state_dict(), strict=True)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.padding_mode = padding
    return model


def top_eigenvalue(T, z, iters: int = 40) -> tuple[float, float]:
    """(Rayleigh quotient of the top eigenvector of ∂T/∂x at z, its share on the 6-pixel border): power
    iteration with finite-difference Jacobian-vector products (T holds once-differentiable Functions)."""
    torch.manual_seed(0)
    with torch.no_grad():
        fz, v = T(z), torch.randn_like(z)
        v = v / v.norm()
        for _ in range(iters):
            w = (T(z + 1e-3 * z.norm() * v) - fz) / (1e-3 * z.norm())
            lam, v = float((w * v).sum()), w / w.norm()
    border = torch.ones_like(v, dtype=torch.bool)
    border[..., 6:-6, 6:-6] = False
    return lam, float(v[border].pow(2).sum())


def solve(model, y, physics, x0, x):
    """(x*, forward stats, backward stats) of one solve, the backward of the MSE to x."""
    model.zero_grad()
    out = model(y, physics, init=x0)
    torch.nn.functional.mse_loss(out, x).backward()
    return out.detach(), model.deq_stats["forward"], model.deq_stats["backward"]


def main(argv=None) -> dict:
    sys.path.insert(0, ROOT)
    import unfolded
    from unfolded.metrics import psnr
    from unfolded.solvers import ConvergenceWarning
    from unfolded.training.data import BundledDataModule
    from unfolded.training.metrics import crop, interior_margin
    from unfolded.training.simulation import initial_estimate

    p = argparse.ArgumentParser()
    p.add_argument("--tol", type=float, nargs="+", default=[1e-3, 1e-4])
    p.add_argument("--budget", type=int, default=200, help="forward and backward budget (anderson.yaml: 50)")
    p.add_argument("--padding", nargs="+", default=["zeros", "replicate"])
    p.add_argument("--crops", type=int, default=4, help="batches of 8 training crops")
    p.add_argument("--model", default="zoo:hqs_blur")
    p.add_argument("--spectrum", action="store_true", help="also the top Jacobian eigenvalue of T at the "
                   "unrolled output x_K and along plain iterations of T (interior PSNR per iteration)")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    torch.manual_seed(0)
    rec = unfolded.load(args.model)
    base = yaml.safe_load(open(os.path.join(ROOT, "conf", "deq", "anderson.yaml")))
    dm = BundledDataModule(crop_size=64, image_size=256, eval_size=256, channels=1, batch_size=8)
    dm.setup("fit")
    tests = [b["image"] for b in dm.eval_dataloader("test", shard=False)]
    cases = []
    for i, x in enumerate(tests):
        physics, y = rec.simulate(x, first_index=i)
        cases.append(("test", x, physics, y))
    crops = iter(dm.train_dataloader())
    for i in range(args.crops):
        b = next(crops)
        x = b["image"]
        physics, y = rec.simulate(x, seed=99, first_index=8 * i)
        cases.append(("crops", x, physics, y))
    rows = []
    if args.spectrum:
        for _kind, x, physics, y in cases[:len(tests)]:
            z = initial_estimate(rec.init, y, physics)
            m = interior_margin(physics, x.shape)

            def T(v, y=y, physics=physics):
                return rec.model.fixed_point_map(v, y, physics)

            trace = {}
            with torch.no_grad():
                for k in range(1, 31):
                    z = T(z)
                    trace[k] = round(float(psnr(crop(z, m), crop(x, m)).mean()), 2)
                    if k == rec.model.max_iter:
                        lam, border = top_eigenvalue(T, z)
            print(json.dumps(dict(spectrum_at_xK=lam, border_share=border,
                                  psnr_int_plain_iterations={k: trace[k] for k in (1, 3, 5, 6, 8, 10, 15, 20, 30)})),
                  flush=True)
    for padding in args.padding:
        for tol in args.tol:
            deq = dict(base, tol_forward=tol, tol_backward=tol, max_iter_forward=args.budget,
                       max_iter_backward=args.budget, gmres_restart=args.budget)
            model = deq_model(rec, deq, padding)
            for kind, x, physics, y in cases:
                x0 = initial_estimate(rec.init, y, physics)
                with torch.no_grad():
                    x_unr = rec.model(y, physics, init=x0)
                x_star, f, bw = solve(model, y, physics, x0, x)
                m = interior_margin(physics, x.shape)
                rows.append(dict(padding=padding, tol=tol, kind=kind, fwd_conv=f["converged"], fwd_it=f["iterations"],
                                 fwd_res=f["residual"], bwd_conv=bw["converged"], bwd_it=bw["iterations"],
                                 bwd_res=bw["residual"],
                                 psnr_int_star=float(psnr(crop(x_star, m), crop(x, m)).mean()),
                                 psnr_int_unrolled=float(psnr(crop(x_unr, m), crop(x, m)).mean()),
                                 psnr_star_vs_unrolled=float(psnr(x_star, x_unr).mean())))
                print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows}


if __name__ == "__main__":
    main()
