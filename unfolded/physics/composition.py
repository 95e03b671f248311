"""A = A_k ∘ … ∘ A_1 from linear operators (`physics1 * physics2`): adjoint in reverse order, prox by CG."""

from __future__ import annotations

from torch import Tensor, nn

from .base import LinearPhysics


class ComposedLinearPhysics(LinearPhysics):
    """`ComposedLinearPhysics(p1, p2, ...)` applies p1 first; noise model, max_iter and tol of the last one.

    Keywords to A / A_adjoint are refused (each factor has its own: update the factor, e.g. `composed[0].
    update(filter=k)`). The prox is solved by CG on the composed normal equations.
    """

    def __init__(self, *physics: LinearPhysics):
        if len(physics) < 2 or not all(isinstance(p, LinearPhysics) for p in physics):
            raise TypeError("ComposedLinearPhysics: give two or more unfolded.physics operators")
        last = physics[-1]
        super().__init__(noise_model=last.noise_model, max_iter=last.max_iter, tol=last.tol,
                         implicit_backward_solver=last.implicit_backward_solver)
        flat = []
        for p in physics:
            flat.extend(p.physics_list if isinstance(p, ComposedLinearPhysics) else [p])
        self.physics_list = nn.ModuleList(flat)

    def __getitem__(self, item: int) -> LinearPhysics:
        return self.physics_list[item]

    def A(self, x: Tensor, **params) -> Tensor:
        if params:
            raise self._unknown("A", params)
        for p in self.physics_list:
            x = p.A(x)
        return x

    def A_adjoint(self, y: Tensor, **params) -> Tensor:
        if params:
            raise self._unknown("A_adjoint", params)
        for p in reversed(self.physics_list):
            y = p.A_adjoint(y)
        return y
