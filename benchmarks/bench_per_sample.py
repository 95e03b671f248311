"""Claim (issue #19): training with an operator and a noise level drawn for every sample costs at most 1.10x
the step with the run's one fixed operator. Same step otherwise: HQS K=5 with DnCNN 8x32, valid blur with
15x15 kernels, a batch of 8 64² crops, measurements simulated inside the step as training does (per-sample
kernels drawn by sample number, a copy of the physics per batch, A applied once; the fixed operator's noise
seeded per sample as today). The two cases run in fresh processes, alternated five times in one run (medians).
"""

import sys

from _harness import machine, measure_against_floor, print_table

SPEC = dict(size=64, batch=8, simulate="fixed")


def main(device: str = "cpu", repeats: int = 7, rounds: int = 5) -> list[dict]:
    fixed_spec = dict(SPEC, device=device)
    per_sample_spec = dict(SPEC, device=device, simulate="per_sample")
    per_sample, fixed = measure_against_floor(per_sample_spec, fixed_spec, rounds=rounds, repeats=repeats)
    rows = [dict(case="fixed operator", **fixed), dict(case="operator drawn per sample", **per_sample)]
    ratio = per_sample["time_s"] / fixed["time_s"]
    print(f"\nPer-sample operators against one fixed operator — {machine()}, device {device}")
    print_table("", rows, [("case", "case", ""), ("time_s", "step s", ".3f"), ("peak_mb", "peak MB", ".0f"),
                           ("cg_forward/iters_mean", "CG fwd it", ".1f"),
                           ("cg_backward/iters_mean", "CG bwd it", ".1f")])
    print(f"step time ratio per-sample / fixed: {ratio:.3f} (goal <= 1.10)")
    return rows


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["cpu"]))
