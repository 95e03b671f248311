"""Claims: with conf/deq/anderson.yaml (anchored map) a DEQ training step costs ≤ 2× the floor with both solves
converged, and without the anchor the solves do not converge;
on a trained model's x*, GMRES reaches the backward tolerance in far fewer vector–Jacobian products (VJPs)
than Anderson or fixed-point iteration; memory is flat in forward iterations.

Case: DEQ HQS + Blur(valid) 64², batch 4, the training configuration's DnCNN; floor = 5 DnCNN
forward+backward passes measured in the same run. Weights: a trained model (`python bench_deq.py
<checkpoint.ckpt>`, a checkpoint of train.py) or, without one, the untrained
network. Untrained, the denoiser is the identity (zero last layer), so T is the prox of the blur, whose
Jacobian has eigenvalues → 1 where the blur removes frequencies: without the anchor no solver converges
there, with it the solves are those of a 1/(1+γμ) contraction.
"""

import os
import sys
import tempfile
import warnings

import torch
from _harness import HERE, machine, measure, median_run, print_table
from omegaconf import OmegaConf

CASE = dict(size=64, batch=4, K=5)
SOLVERS = ("fixed_point", "anderson", "broyden", "gmres")


def deq_settings() -> dict:
    """DEQConfig arguments of conf/deq/anderson.yaml (the `deq=anderson` training default)."""
    cfg = OmegaConf.to_container(OmegaConf.load(os.path.join(HERE, "..", "conf", "deq", "anderson.yaml")))
    cfg.pop("_target_")
    return cfg


def weights_file(ckpt: str | None) -> str | None:
    """The model's state dict from a Lightning checkpoint of train.py (keys 'model.*')."""
    if ckpt is None:
        return None
    state = torch.load(ckpt, map_location="cpu", weights_only=True)  # a file from elsewhere never runs code
    path = os.path.join(tempfile.mkdtemp(), "model.pt")
    torch.save({k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")}, path)
    return path


def backward_vjps(spec: dict, tol: float = 1e-4, budget: int = 200, reference: int = 400) -> dict:
    """VJPs each backward solver needs to reach `tol` at the model's x*, and the phantom and
    Jacobian-free gradients' cosine to the implicit one (GMRES to 1e-6 or `reference` VJPs)."""
    sys.path.insert(0, HERE)
    from _cases import build_step

    from unfolded.solvers import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)
    deq = dict(spec["deq"], jacobian_reg=0.0, anderson_acceleration_backward=False, backward_solver=None)

    def run(**settings):
        step, model = build_step(spec | dict(deq=deq | settings))
        step()
        grad = torch.cat([p.grad.flatten() for p in model.prior.parameters()])
        return model.deq_stats, grad

    out = {}
    for name in SOLVERS:
        stats, _ = run(backward_solver=name, tol_backward=tol, max_iter_backward=budget)
        out[name] = (stats["backward"]["iterations"], stats["backward"]["converged"], stats["backward"]["residual"])
    stats, exact = run(backward_solver="gmres", tol_backward=1e-6, max_iter_backward=reference)
    out["reference_residual"] = stats["backward"]["residual"]
    for label, settings in (("phantom", dict(backward="phantom")), ("jacobian_free", dict(jacobian_free=True))):
        out[label] = float(torch.nn.functional.cosine_similarity(run(**settings)[1], exact, 0))
    return out


def main(ckpt: str | None = None, repeats: int = int(os.environ.get("BENCH_REPEATS", 5))) -> list[dict]:
    deq = deq_settings()
    base = CASE | dict(deq=deq, weights=weights_file(ckpt))
    floor_spec = dict(algo="floor", size=64, batch=4)
    cases = [("DEQ, conf/deq/anderson.yaml", base),
             ("  same, phantom backward", base | dict(deq=deq | dict(backward="phantom", backward_solver=None,
                                                                     anderson_acceleration_backward=False))),
             ("  same, Jacobian reg. 0.05", base | dict(deq=deq | dict(jacobian_reg=0.05))),
             ("  same, no anchor (anchor_weight 0)", base | dict(deq=deq | dict(anchor_weight=0.0)))]
    cases += [(f"DEQ, {k} fwd iters (memory)", base | dict(deq=deq | dict(max_iter_forward=k, tol_forward=0.0,
                                                                          max_iter_backward=5)))
              for k in (10, 100)]
    floors, rows = [], []
    for name, spec in cases:  # a floor before every case: the ratio uses their median (noisy machine)
        floors.append(measure(floor_spec, repeats=repeats))
        rows.append(dict(case=name, **measure(spec, repeats=repeats)))
    floor = median_run(floors)
    for row in rows:
        row["time_ratio"] = row["time_s"] / floor["time_s"]
        row["converged"] = "/".join({True: "yes", False: "no", None: "-"}[c] for c in row.get("deq_converged", []))
    rows.insert(0, dict(case="floor (5x DnCNN)", **floor, time_ratio=1.0))
    print(f"\nDEQ HQS+Blur(valid) 64² B4, {'weights ' + ckpt if ckpt else 'untrained'} — {machine()}")
    print(f"settings: {deq}")
    print_table("", rows, [("case", "case", ""), ("time_s", "step s", ".3f"), ("time_ratio", "x floor", ".2f"),
                           ("peak_mb", "peak MB", ".1f"), ("deq_forward_iters", "fwd it", ""),
                           ("deq_backward_iters", "bwd it", ""), ("converged", "fwd/bwd converged", "")])
    print(f"peak memory 100 vs 10 forward iterations: {rows[-1]['peak_mb'] / max(rows[-2]['peak_mb'], 1e-9):.3f}")
    if os.environ.get("BENCH_SKIP_AGREEMENT") is None:
        v = backward_vjps(base)
        print("backward VJPs to 1e-4 at x*: " + ", ".join(
            f"{n} {v[n][0]}{'' if v[n][1] else f' (unconverged, {v[n][2]:.1e})'}" for n in SOLVERS))
        print(f"denoiser-gradient cosine to the implicit one (GMRES, residual {v['reference_residual']:.1e}): "
              f"phantom {v['phantom']:.4f}, Jacobian-free {v['jacobian_free']:.4f}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
