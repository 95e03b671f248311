"""Claim: an unfolded step costs close to its floor (K DnCNN forward+backward passes, same size).

Each case and its floor run in fresh processes, alternated five times in one run (medians), so their
ratio is meaningful on a noisy machine. Memory: peak RSS the steps add (noisy on a CPU) and the exact
size of what the forward saves for the backward ("graph"). Goals (issue #6): HQS+Blur(valid) implicit
256² ≤1.2× time and ≤1.05× memory; HQS+BlurFFT 256² ≤1.05×; HQS+Blur(valid) 64² B4 ≤1.15×.
"""

import sys

from _harness import machine, measure_against_floor, print_table

CASES = [
    ("HQS+Blur(valid) implicit 256² B1 K5", dict(size=256)),
    ("HQS+Blur(valid) unrolled 256² B1 K5", dict(size=256, implicit=False)),
    ("HQS+Blur(valid) implicit 256² CG200", dict(size=256, cg_max_iter=200)),
    ("HQS+BlurFFT 256² B1 K5", dict(size=256, physics="blur_fft")),
    ("HQS+Blur(valid) 64² B4 K5", dict(size=64, batch=4)),
    ("PGD+Denoising 64² B4 K5", dict(size=64, batch=4, algo="pgd", physics="denoise")),
]


def main(device: str = "cpu", repeats: int = 7, rounds: int = 5) -> list[dict]:
    rows = []
    for name, spec in CASES:
        spec = dict(spec, device=device)
        floor_spec = dict(algo="floor", size=spec["size"], batch=spec.get("batch", 1), device=device)
        r, floor = measure_against_floor(spec, floor_spec, rounds=rounds, repeats=repeats)
        rows.append(dict(case=name, **r, floor_s=floor["time_s"], time_ratio=r["time_s"] / floor["time_s"],
                         mem_ratio=r["peak_mb"] / max(floor["peak_mb"], 1e-9),
                         graph_ratio=r["graph_mb"] / floor["graph_mb"]))
    print(f"\nStep time and peak memory as ratios to the floor — {machine()}, device {device}")
    print_table("", rows, [("case", "case", ""), ("time_s", "step s", ".3f"), ("floor_s", "floor s", ".3f"),
                           ("time_ratio", "time x floor", ".2f"), ("peak_mb", "peak MB", ".0f"),
                           ("mem_ratio", "mem x floor", ".2f"), ("graph_ratio", "graph x floor", ".3f"),
                           ("cg_forward/iters_mean", "CG fwd it", ".1f"),
                           ("cg_backward/iters_mean", "CG bwd it", ".1f")])
    return rows


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["cpu"]))
