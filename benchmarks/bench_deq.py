"""Claim: a DEQ step costs its solver iterations and nothing more, and its memory is flat in forward
iterations.

DEQ HQS + Blur(valid) 64², batch 4, Anderson forward, 5 forward iterations; floor = 5 DnCNN
forward+backward passes measured in the same run (goal ≤2.3×). Peak memory at 10 vs 100 forward
iterations (goal ≤1.05×).

The backward solve v = Jᵀv + u of this untrained network does not converge: its denoiser is the
identity (zero last layer), so T is the prox of the blur, whose Jacobian has eigenvalues → 1 where the
blur removes frequencies. There the Neumann series Σ (Jᵀ)ᵏu only grows with k. The table therefore
shows the step at SPEC's default backward budget (50 iterations), at 10, and Jacobian-free, with the
cost of one backward iteration and how well each gradient's direction agrees with a 400-iteration one.
"""

import os
import sys
import warnings

import torch
from _harness import HERE, machine, measure, median_run, print_table

CASE = dict(size=64, batch=4, K=5)


def _per_backward_iteration(rows: list[dict]) -> float:
    """Seconds per backward iteration, from the rows at 50 and 10 backward iterations."""
    a, b = rows
    return (a["time_s"] - b["time_s"]) / (a["deq_backward_iters"] - b["deq_backward_iters"])


def gradient_agreement(budgets=(1, 10, 50), reference=400) -> dict:
    """Cosine between the denoiser-weight gradient at each backward budget and at `reference`
    Anderson iterations (jacobian-free for budget 1)."""
    sys.path.insert(0, HERE)
    from _cases import build_step

    from unfolded.solvers import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)

    def grad(deq: dict) -> torch.Tensor:
        step, model = build_step(CASE | dict(deq=deq))
        step()
        return torch.cat([p.grad.flatten() for p in model.prior.parameters()])

    ref = grad(dict(anderson_acceleration_backward=True, max_iter_backward=reference))
    out = {}
    for n in budgets:
        g = grad(dict(jacobian_free=True) if n == 1 else dict(max_iter_backward=n))
        out[n] = float(torch.nn.functional.cosine_similarity(g, ref, 0))
    return out


def main(repeats: int = 5) -> list[dict]:
    floor_spec = dict(algo="floor", size=64, batch=4)
    cases = [("DEQ, 50 bwd iters (default)", CASE | dict(deq=dict(max_iter_backward=50))),
             ("DEQ, 10 bwd iters", CASE | dict(deq=dict(max_iter_backward=10))),
             ("DEQ, Jacobian-free", CASE | dict(deq=dict(jacobian_free=True)))]
    cases += [(f"DEQ, {k} fwd iters", CASE | dict(K=k, deq=dict(max_iter_backward=10))) for k in (10, 100)]
    floors, rows = [], []
    for name, spec in cases:  # a floor before every case: the ratio uses their median (noisy machine)
        floors.append(measure(floor_spec, repeats=repeats))
        rows.append(dict(case=name, **measure(spec, repeats=repeats)))
    floor = median_run(floors)
    for row in rows:
        row["time_ratio"] = row["time_s"] / floor["time_s"]
    rows.insert(0, dict(case="floor (5x DnCNN)", **floor, time_ratio=1.0))
    print(f"\nDEQ HQS+Blur(valid) 64² B4, 5 fwd iterations unless stated — {machine()}")
    print_table("", rows, [("case", "case", ""), ("time_s", "step s", ".3f"), ("time_ratio", "x floor", ".2f"),
                           ("peak_mb", "peak MB", ".1f"), ("deq_forward_iters", "fwd it", ""),
                           ("deq_backward_iters", "bwd it", "")])
    per_iter = _per_backward_iteration(rows[1:3])
    print(f"\none backward iteration: {per_iter * 1e3:.1f} ms = {per_iter / (floor['time_s'] / 5):.2f} of one "
          f"DnCNN forward+backward (it is one vector-Jacobian product through T)")
    print(f"peak memory 100 vs 10 forward iterations: {rows[5]['peak_mb'] / rows[4]['peak_mb']:.3f}")
    if os.environ.get("BENCH_SKIP_AGREEMENT") is None:
        agreement = gradient_agreement()
        print("denoiser-gradient direction vs 400 Anderson backward iterations (cosine): "
              + ", ".join(f"{'Jacobian-free' if n == 1 else f'{n} iters'} {c:.4f}" for n, c in agreement.items()))
    return rows


if __name__ == "__main__":
    main()
