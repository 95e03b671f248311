"""unfolded: unfolded and deep-equilibrium solvers of imaging inverse problems.

`import unfolded as dinv` runs code written for deepinv's unfolded algorithms (see SPEC).
"""

from . import models, optim, physics

__version__ = "0.1.0"
__all__ = ["physics", "optim", "models"]
