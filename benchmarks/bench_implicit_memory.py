"""Claim: the implicit least-squares backward uses memory flat in CG iterations, well below unrolled.

HQS + Blur(valid) 128², batch 1, K = 5. With tol 1e-300 CG runs until max_iter (or until its float32
residual underflows; the iteration columns show how many ran), so the unrolled graph grows with max_iter;
the implicit one must not.
"""

from _harness import machine, measure, print_table


def main(repeats: int = 3) -> list[dict]:
    rows = []
    floor = measure(dict(algo="floor", size=128), repeats=repeats)
    for implicit in (True, False):
        for cg in (50, 200):
            r = measure(dict(size=128, implicit=implicit, cg_max_iter=cg, cg_tol=1e-300), repeats=repeats)
            rows.append(dict(case=f"{'implicit' if implicit else 'unrolled'} CG{cg}", **r,
                             time_ratio=r["time_s"] / floor["time_s"], mem_ratio=r["peak_mb"] / floor["peak_mb"]))
    rows.insert(0, dict(case="floor (5x DnCNN)", **floor, time_ratio=1.0, mem_ratio=1.0))
    print(f"\nImplicit vs unrolled backward, HQS+Blur(valid) 128² B1 K5 — {machine()}")
    print_table("", rows, [("case", "case", ""), ("time_s", "step s", ".3f"), ("time_ratio", "x floor", ".2f"),
                           ("peak_mb", "peak MB", ".1f"), ("mem_ratio", "mem x floor", ".2f"),
                           ("cg_forward/iters_mean", "CG fwd it", ".1f"),
                           ("cg_backward/iters_mean", "CG bwd it", ".1f")])
    by = {r["case"]: r for r in rows}
    print(f"\nimplicit peak CG200/CG50: {by['implicit CG200']['peak_mb'] / by['implicit CG50']['peak_mb']:.3f}  "
          f"unrolled peak CG200/CG50: {by['unrolled CG200']['peak_mb'] / by['unrolled CG50']['peak_mb']:.3f}")
    return rows


if __name__ == "__main__":
    main()
