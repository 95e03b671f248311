"""`DEQConfig`: the settings of a deep equilibrium model (SPEC §6), validated where they are given."""

from __future__ import annotations

from dataclasses import dataclass

from ..solvers.fixed_point import AndersonAccelerationConfig
from ..solvers.registry import BACKWARD_SOLVERS, FORWARD_SOLVERS, check_solver

BACKWARD_MODES = ("implicit", "phantom")


@dataclass
class DEQConfig:
    """Deep equilibrium settings. The first ten fields and their defaults are the reference's (SPEC §6).

    Passing a DEQConfig (or `DEQ=True`) makes the algorithm a DEQ *and trainable*, as in the reference
    (deepinv 0.5.0 creates the parameters when `unfold or DEQ`): with `unfold=False` the names in
    `trainable_params` still become parameters. `trainable_params=None` still means none besides the
    network (SPEC §1), where the reference would make every hyperparameter trainable.

    Additions (defaults keep the SPEC meanings):
    - max_iter_forward: forward budget; None = the algorithm's `max_iter`.
    - tol_forward: stop when ‖T(x) − x‖ ≤ tol·‖T(x)‖ for every sample.
    - tol_backward: stop when ‖u − (I − Jᵀ)v‖ ≤ tol·‖u‖ for every sample (whatever the solver).
    - forward_solver: 'fixed_point' | 'anderson' | 'broyden'; None = 'anderson' if
      anderson_acceleration_forward else 'fixed_point'.
    - backward_solver: 'fixed_point' | 'anderson' | 'broyden' | 'gmres'; None = 'anderson' if
      anderson_acceleration_backward else 'fixed_point'. gmres_restart: GMRES's Krylov dimension.
    - backward: 'implicit' (solve the IFT system) or 'phantom' (autograd through phantom_steps damped
      steps x ← (1−τ)x + τT(x) from x*, τ = phantom_tau; Geng et al. 2021).
    - jacobian_reg: weight w of w·‖∂T/∂x‖²_F/d at x* (Hutchinson, Bai et al. 2021), which keeps T
      contractive while it trains; the model exposes it as `deq_jacobian_loss` for the trainer to add.
    - anchor_weight: μ ≥ 0; the fixed-point map uses the data fidelity f + μ/2‖x − x₀‖², x₀ the solve's
      start (the model's init, Aᵀy by default). A μ-strongly convex f makes the data step contract by
      1/(1+γμ) (γ the step size) in every direction, also those the measurements barely see, where the
      plain map has Jacobian eigenvalues ≈ 1 (a valid blur's border) and no solver converges in a
      useful budget. The fixed point moves towards x₀ only where the data do not determine it.
    - beta_backward, eps_backward: the newer releases' names of the backward Anderson β, ε.
    """

    jacobian_free: bool = False
    anderson_acceleration_forward: bool = False
    history_size_forward: int = 5
    beta_anderson_acc_forward: float = 1.0
    eps_anderson_acc_forward: float = 1e-4
    anderson_acceleration_backward: bool = False
    history_size_backward: int = 5
    beta_anderson_acc_backward: float = 1.0
    eps_anderson_acc_backward: float = 1e-4
    max_iter_backward: int = 50
    max_iter_forward: int | None = None
    tol_forward: float = 1e-5
    tol_backward: float = 1e-5
    forward_solver: str | None = None
    backward_solver: str | None = None
    gmres_restart: int = 20
    backward: str = "implicit"
    phantom_steps: int = 5
    phantom_tau: float = 0.5
    jacobian_reg: float = 0.0
    anchor_weight: float = 0.0
    beta_backward: float | None = None
    eps_backward: float | None = None

    def __post_init__(self):
        if self.beta_backward is not None:
            self.beta_anderson_acc_backward = self.beta_backward
        if self.eps_backward is not None:
            self.eps_anderson_acc_backward = self.eps_backward
        for name in ("max_iter_backward", "gmres_restart", "phantom_steps") + (
                ("max_iter_forward",) if self.max_iter_forward is not None else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DEQConfig: {name} must be an integer >= 1, got {value!r}")
        for name in ("tol_forward", "tol_backward", "jacobian_reg", "anchor_weight"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"DEQConfig: {name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < float(self.phantom_tau) <= 1:
            raise ValueError(f"DEQConfig: phantom_tau must be in (0, 1], got {self.phantom_tau!r}")
        check_solver("backward", self.backward, BACKWARD_MODES)
        self._check_switches()
        self.forward_anderson()  # validates the Anderson settings
        self.backward_anderson()

    def _check_switches(self) -> None:
        """Settings that would be silently ignored are refused, naming both."""
        if self.forward_solver is not None:
            check_solver("forward_solver", self.forward_solver, FORWARD_SOLVERS)
            if self.anderson_acceleration_forward and self.forward_solver != "anderson":
                raise ValueError(f"DEQConfig: anderson_acceleration_forward=True contradicts "
                                 f"forward_solver={self.forward_solver!r}; give one")
        if self.backward_solver is not None:
            check_solver("backward_solver", self.backward_solver, BACKWARD_SOLVERS)
            if self.anderson_acceleration_backward and self.backward_solver != "anderson":
                raise ValueError(f"DEQConfig: anderson_acceleration_backward=True contradicts "
                                 f"backward_solver={self.backward_solver!r}; give one")
        if self.jacobian_free and self.backward == "phantom":
            raise ValueError("DEQConfig: jacobian_free=True and backward='phantom' are two different gradients; "
                             "give one")
        if self.jacobian_free or self.backward == "phantom":
            solve = [n for n in ("backward_solver", "anderson_acceleration_backward") if getattr(self, n)]
            if solve:
                raise ValueError(f"DEQConfig: {', '.join(solve)} set, but "
                                 f"{'jacobian_free=True' if self.jacobian_free else 'backward=' + repr(self.backward)}"
                                 " solves no backward system")

    def forward_method(self) -> str:
        return self.forward_solver or ("anderson" if self.anderson_acceleration_forward else "fixed_point")

    def backward_method(self) -> str:
        return self.backward_solver or ("anderson" if self.anderson_acceleration_backward else "fixed_point")

    def forward_anderson(self) -> AndersonAccelerationConfig | None:
        if self.forward_method() != "anderson":
            return None
        return AndersonAccelerationConfig(self.history_size_forward, self.beta_anderson_acc_forward,
                                          self.eps_anderson_acc_forward)

    def backward_anderson(self) -> AndersonAccelerationConfig | None:
        if self.backward_method() != "anderson":
            return None
        return AndersonAccelerationConfig(self.history_size_backward, self.beta_anderson_acc_backward,
                                          self.eps_anderson_acc_backward)


def deq_config(DEQ) -> DEQConfig | None:
    """`DEQ=None/False`: no DEQ; `True`: DEQConfig(); a DEQConfig as given."""
    if DEQ is None or DEQ is False:
        return None
    if DEQ is True:
        return DEQConfig()
    if isinstance(DEQ, DEQConfig):
        return DEQ
    raise TypeError(f"DEQ must be None, a bool or a DEQConfig, got {type(DEQ).__name__}")
