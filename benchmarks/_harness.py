"""Run each benchmark case in its own process (clean peak memory) and print ratios to the floor."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def graph_megabytes(step) -> float:
    """Bytes the forward pass of one step saves for its backward (distinct storages, all alive together
    until the backward): the memory an unrolled solver grows with its iterations and an implicit one must
    not. Exact, unlike RSS on a CPU. Tensors saved while the backward runs (its own graphs) not counted."""
    seen: dict[tuple, int] = {}

    def pack(t):
        if torch._C._current_graph_task_id() == -1:  # -1: not inside a backward pass
            storage = t.untyped_storage()
            seen[(t.device, storage.data_ptr())] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values()) / 2**20


def measure_in_this_process(spec: dict, warmup: int, repeats: int) -> dict:
    """Median step time and the peak memory the steps add (RSS on CPU, allocator peak on GPU), then the
    size of one step's autograd graph."""
    sys.path.insert(0, HERE)
    from _cases import build_step

    from unfolded.solvers import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    step, model = build_step(spec)
    cuda = spec.get("device", "cpu").startswith("cuda")
    base = _rss_bytes()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for i in range(warmup + repeats):
        model.solver_log.reset() if hasattr(model, "solver_log") else None
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {"time_s": statistics.median(times), "peak_mb": max(peak - base, 0) / 2**20}
    if hasattr(model, "solver_log"):
        out.update({k: v for k, v in model.solver_log.summary().items() if k.endswith("iters_mean")})
        model.solver_log.reset()
    out["graph_mb"] = graph_megabytes(step)
    if getattr(model, "deq_stats", None):
        out["deq_forward_iters"] = model.deq_stats["forward"]["iterations"]
        out["deq_backward_iters"] = model.deq_stats.get("backward", {}).get("iterations", 0)
        out["deq_converged"] = [model.deq_stats[k].get("converged") for k in ("forward", "backward")
                                if k in model.deq_stats]
    return out


def measure(spec: dict, warmup: int = 2, repeats: int = 5) -> dict:
    """Measure `spec` in a fresh Python process."""
    cmd = [sys.executable, os.path.join(HERE, "_harness.py"), json.dumps(spec), str(warmup), str(repeats)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"benchmark case {spec} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def measure_against_floor(spec: dict, floor_spec: dict, rounds: int = 3, repeats: int = 5) -> tuple[dict, dict]:
    """Alternate floor and case processes `rounds` times; report medians, so that a slow spell of a noisy
    machine hits both alike. Returns (case, floor) with the median time and peak memory of each."""
    cases, floors = [], []
    for _ in range(rounds):
        floors.append(measure(floor_spec, repeats=repeats))
        cases.append(measure(spec, repeats=repeats))
    return median_run(cases), median_run(floors)


def median_run(runs: list[dict]) -> dict:
    """The last run's figures, with time and peak memory replaced by their medians over `runs`."""
    return dict(runs[-1], time_s=statistics.median(r["time_s"] for r in runs),
                peak_mb=statistics.median(r["peak_mb"] for r in runs))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}"


def print_table(title: str, rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """columns: (key, header, format)."""
    print(f"\n{title}")

    def cell(row, key, fmt):
        v = row.get(key, "")
        return format(v, fmt) if isinstance(v, (int, float)) else str(v)

    widths = [max([len(h)] + [len(cell(r, k, f)) for r in rows]) for k, h, f in columns]
    print("  ".join(h.rjust(w) for (_, h, _), w in zip(columns, widths)))
    for row in rows:
        print("  ".join(cell(row, k, f).rjust(w) for (k, _, f), w in zip(columns, widths)))

if __name__ == "__main__":
    result = measure_in_this_process(json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    print(json.dumps(result))
