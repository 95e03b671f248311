"""Claim: MoDL with the implicit least-squares backward keeps memory flat in CG iterations.

MoDL K=3 (DnCNN depth 7, 64 channels) on MultiCoilMRI 128², 8 coils, 4× random mask, batch 1.
CG runs exactly max_iter iterations (tol 1e-30 is unreachable), so the unrolled backward stores every
CG iteration; the implicit one stores only (x, y, z, γ) per solve. Two figures per case, each case in
its own process: the bytes autograd saves for backward (exact, from saved_tensors_hooks) and the peak
resident memory one forward+backward adds (RSS high-water mark, noisier).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))


def run_case(implicit: bool, cg_iters: int, size: int = 128, coils: int = 8) -> dict:
    import torch

    sys.path.insert(0, os.path.dirname(HERE))
    from unfolded.models import DnCNN, MoDL
    from unfolded.physics import MultiCoilMRI, random_mask
    from unfolded.solvers import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)
    torch.manual_seed(0)
    physics = MultiCoilMRI(random_mask((size, size), 4), coils, tol=1e-30, max_iter=cg_iters,
                           implicit_backward_solver=implicit)
    model = MoDL(DnCNN(2, 2, depth=7, last_layer_init="kaiming"), num_iter=3)
    x = torch.rand(1, 2, size, size)
    y = physics(x)
    saved = []
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                  lambda t: t):
        loss = (model(y, physics) - x).pow(2).mean()
    loss.backward()
    seconds = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_rss
    return dict(saved_mb=sum(saved) / 2**20, peak_mb=peak_kb / 1024, seconds=seconds)


def main() -> list[dict]:
    rows = []
    for implicit in (True, False):
        for cg in (5, 50, 200):
            out = subprocess.run([sys.executable, __file__, "--case", str(int(implicit)), str(cg)],
                                 capture_output=True, text=True, check=True,
                                 env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
            rows.append(dict(case=f"{'implicit' if implicit else 'unrolled'} CG{cg}", **json.loads(out.stdout)))
    print("MoDL K=3 (DnCNN 7x64) on MultiCoilMRI 128², 8 coils, B=1: one forward + backward")
    print(f"{'case':<16}{'saved MB':>10}{'peak RSS MB':>13}{'time s':>9}")
    for r in rows:
        print(f"{r['case']:<16}{r['saved_mb']:>10.1f}{r['peak_mb']:>13.1f}{r['seconds']:>9.2f}")
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--case":
        print(json.dumps(run_case(bool(int(sys.argv[2])), int(sys.argv[3]))))
    else:
        main()
