"""Small utilities shared by tests."""

import warnings

import torch

from unfolded.solvers import ConvergenceWarning


def saved_numel(fn) -> tuple[int, object]:
    """Run fn() and return (number of elements autograd saved for backward, fn's result).

    Convergence warnings are silenced: the callers cap solver iterations on purpose.
    """
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        out = fn()
    return sum(saved), out
