"""Claim (issue #19): training with an operator and a noise level drawn for every sample costs at most 1.10x
the step with the run's one fixed operator. Same step otherwise: HQS K=5 with DnCNN 8x32, valid blur with
15x15 kernels, a batch of 8 64² crops, measurements simulated inside the step as training does (per-sample
kernels drawn by sample number, a copy of the physics per batch, A applied once; the fixed operator's noise
seeded per sample as today). Two comparisons, each pair in fresh processes alternated five times in one run
(medians): against today's fixed-operator step, which simulates each sample by its own call of the physics,
and against the fixed operator simulated like the per-sample path (A once per batch), which isolates what
per-sample kernels cost in the model's solves.
"""

import sys

from _harness import machine, measure_against_floor, print_table

SPEC = dict(size=64, batch=8, simulate="fixed")


def main(device: str = "cpu", repeats: int = 7, rounds: int = 5) -> list[dict]:
    per_sample_spec = dict(SPEC, device=device, simulate="per_sample")
    rows = []
    for label, simulate in (("fixed operator, samples simulated one by one (today)", "fixed"),
                            ("fixed operator, batch simulated at once", "fixed_batched")):
        per_sample, fixed = measure_against_floor(per_sample_spec, dict(SPEC, device=device, simulate=simulate),
                                                  rounds=rounds, repeats=repeats)
        ratio = per_sample["time_s"] / fixed["time_s"]
        rows += [dict(case=label, **fixed), dict(case="  operator drawn per sample", ratio=ratio, **per_sample)]
    print(f"\nPer-sample operators against one fixed operator — {machine()}, device {device}")
    print_table("", rows, [("case", "case", ""), ("time_s", "step s", ".3f"), ("peak_mb", "peak MB", ".0f"),
                           ("cg_forward/iters_mean", "CG fwd it", ".1f"),
                           ("cg_backward/iters_mean", "CG bwd it", ".1f"), ("ratio", "per-sample / fixed", ".3f")])
    print("goal (issue #19): per-sample / fixed <= 1.10")
    return rows


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["cpu"]))
