"""Claim: a DEQ step costs close to its floor and its memory is flat in forward iterations.

DEQ HQS + Blur(valid) 64², batch 4, Anderson forward, 5 forward iterations; floor = 5 DnCNN
forward+backward passes measured in the same run (goal ≤2.3×). Peak memory at 10 vs 100 forward
iterations (goal ≤1.05×).
"""

from _harness import machine, measure, print_table


def main(repeats: int = 5) -> list[dict]:
    floor = measure(dict(algo="floor", size=64, batch=4), repeats=repeats)
    rows = [dict(case="floor (5x DnCNN)", **floor, time_ratio=1.0)]
    for k in (5, 10, 100):
        r = measure(dict(size=64, batch=4, K=k, deq=True), repeats=repeats)
        rows.append(dict(case=f"DEQ HQS {k} fwd iters", **r, time_ratio=r["time_s"] / floor["time_s"]))
    print(f"\nDEQ HQS+Blur(valid) 64² B4 — {machine()}")
    print_table("", rows, [("case", "case", ""), ("time_s", "step s", ".3f"), ("time_ratio", "x floor", ".2f"),
                           ("peak_mb", "peak MB", ".1f"), ("deq_forward_iters", "fwd it", ""),
                           ("deq_backward_iters", "bwd it", "")])
    print(f"\npeak memory 100 vs 10 forward iterations: {rows[3]['peak_mb'] / rows[2]['peak_mb']:.3f}")
    return rows


if __name__ == "__main__":
    main()
