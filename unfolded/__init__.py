"""unfolded: unfolded and deep-equilibrium solvers of imaging inverse problems.

`import unfolded as dinv` runs code written for deepinv's unfolded algorithms (see SPEC).
"""

from . import models, optim, physics

__version__ = "0.1.0"
__all__ = ["physics", "optim", "models", "load"]


def load(path, device="cpu", physics=None):
    """A trained model ready to reconstruct, `rec(y)` -> x̂, from a checkpoint, a run folder, an exported
    `.safetensors` file or `zoo:<name>` (see `unfolded.training.inference`)."""
    from .training.inference import load as _load

    return _load(path, device=device, physics=physics)
