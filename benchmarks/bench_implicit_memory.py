"""Claim: the implicit least-squares backward uses memory flat in CG iterations, well below unrolled.

HQS + Blur 128², batch 1, K = 5, float64 (so that CG with tol 1e-300 keeps iterating long before its
residual underflows; the iteration columns show how many ran). Valid padding (the strip solver, which
converges fastest) and reflect padding (CG on images), each at max_iter 50 and 200, with the implicit and
the unrolled backward. "graph MB" is what the forward saves for the backward (exact); "RSS MB" the peak
resident memory the steps add (noisy on a CPU, ±10 %).
"""

from _harness import machine, measure, print_table

SPEC = dict(size=128, dtype="float64", cg_tol=1e-300)


def main(repeats: int = 3) -> list[dict]:
    floor = measure(dict(SPEC, algo="floor"), repeats=repeats)
    rows = [dict(case="floor (5x DnCNN)", **floor)]
    for padding in ("valid", "reflect"):
        for implicit in (True, False):
            for cg in (50, 200):
                r = measure(dict(SPEC, padding=padding, implicit=implicit, cg_max_iter=cg), repeats=repeats)
                rows.append(dict(case=f"{padding} {'implicit' if implicit else 'unrolled'} CG{cg}", **r))
    for r in rows:
        r["graph_ratio"] = r["graph_mb"] / floor["graph_mb"]
        r["mem_ratio"] = r["peak_mb"] / floor["peak_mb"]
    print(f"\nImplicit vs unrolled backward, HQS+Blur 128² B1 K5 float64 — {machine()}")
    print_table("", rows, [("case", "case", ""), ("cg_forward/iters_mean", "CG fwd it", ".1f"),
                           ("cg_backward/iters_mean", "CG bwd it", ".1f"), ("graph_mb", "graph MB", ".1f"),
                           ("graph_ratio", "graph x floor", ".3f"), ("peak_mb", "RSS MB", ".0f"),
                           ("mem_ratio", "RSS x floor", ".2f")])
    by = {r["case"]: r for r in rows}
    for padding in ("valid", "reflect"):
        ratios = [by[f"{padding} {kind} CG200"]["graph_mb"] / by[f"{padding} {kind} CG50"]["graph_mb"]
                  for kind in ("implicit", "unrolled")]
        print(f"{padding}: graph CG200/CG50 implicit {ratios[0]:.3f}, unrolled {ratios[1]:.3f}")
    return rows


if __name__ == "__main__":
    main()
