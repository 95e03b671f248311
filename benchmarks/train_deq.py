"""Claim: `train.py algo=hqs physics=blur deq=anderson` trains with converged DEQ solves; this script runs
that training (the same configuration, hydra overrides as arguments) and counts, over the training steps,
how many forward and backward solves reached their tolerance, then prints the test gain over Tikhonov.

The training module itself adds `model.deq_jacobian_loss` (deq.jacobian_reg) to the loss; this script only
watches the training steps (a wrapper around `UnfoldedModule.training_step` that saves the weights every few
steps and records the Jacobian estimate).

    .venv/bin/python benchmarks/train_deq.py trainer.max_steps=500 [deq.jacobian_reg=...] [...]
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

import torch
from hydra import compose, initialize_config_dir

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main(overrides: list[str], save_every: int = 5) -> dict:
    sys.path.insert(0, ROOT)
    import unfolded.optim.deq as deq
    from unfolded.solvers import ConvergenceWarning
    from unfolded.training import UnfoldedModule
    from unfolded.training.pipeline import run

    warnings.simplefilter("ignore", ConvergenceWarning)
    run_name = time.strftime("%Y%m%d_%H%M%S") + f"_{os.getpid()}"  # two runs started in one second
    out_dir = os.path.join(ROOT, "logs", "bench_train_deq", run_name)
    os.makedirs(out_dir, exist_ok=True)
    solves: list[dict] = []
    report = deq._report

    def counting_report(kind, stats, tol, log):  # every solve, with whether it ran in training
        solves.append(dict(kind=kind, train=kind == "backward" or torch.is_grad_enabled(),
                           iterations=stats.iterations, residual=stats.residuals[-1], converged=stats.converged))
        with open(os.path.join(out_dir, "solves.jsonl"), "a") as f:  # to follow a long run
            f.write(json.dumps(solves[-1]) + "\n")
        report(kind, stats, tol, log)

    deq._report = counting_report
    step = UnfoldedModule.training_step
    jac: list[float] = []

    def training_step(self, x, batch_idx):
        if save_every and self.global_step % save_every == 0:  # weights for bench_deq, also of a cut-short run
            torch.save(self.model.state_dict(), os.path.join(out_dir, "model.pt"))
        loss = step(self, x, batch_idx)  # includes deq.jacobian_reg x the estimate below
        estimate = self.model.deq_stats.get("jacobian_frobenius")
        if loss is not None and estimate is not None:
            jac.append(float(estimate))
            with open(os.path.join(out_dir, "solves.jsonl"), "a") as f:
                row = {"step": self.global_step, "loss": float(loss.detach()), "jacobian": jac[-1]}
                f.write(json.dumps(row) + "\n")
        return loss

    UnfoldedModule.training_step = training_step
    base = ["algo=hqs", "physics=blur", "deq=anderson", "logger=csv", "~callbacks.rich_progress_bar",
            f"paths.output_dir={out_dir}"]
    with initialize_config_dir(config_dir=os.path.join(ROOT, "conf"), version_base="1.3"):
        cfg = compose("train", overrides=base + overrides, return_hydra_config=False)
    t0 = time.perf_counter()
    _, metrics = run(cfg)
    out = {"overrides": overrides, "wall_s": time.perf_counter() - t0, "deq": dict(cfg.algo.DEQ)}
    for kind in ("forward", "backward"):
        rows = [s for s in solves if s["kind"] == kind and s["train"]]
        if rows:
            out[kind] = {"solves": len(rows), "converged_share": sum(s["converged"] for s in rows) / len(rows),
                         "iters_mean": sum(s["iterations"] for s in rows) / len(rows),
                         "iters_max": max(s["iterations"] for s in rows),
                         "worst_residual": max(s["residual"] for s in rows)}
    if jac:
        out["jacobian_frobenius_first_last"] = (jac[0], jac[-1])
    out["test"] = {k: v for k, v in metrics.items() if k.startswith("test/")}
    print(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
