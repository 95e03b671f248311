"""Operator tensors given by keyword (`physics.A(x, filter=k)`, `physics(x, mask=m)`, `physics.update(...)`).

As in the reference, a tensor given to `A`, `A_adjoint`, `forward` or `update_parameters` is validated,
then *stored* as the operator's current one: code such as `y = physics(x, filter=k); x_hat = model(y,
physics)` relies on the model seeing k. A keyword the operator does not know is a ValueError naming the
ones it does (never silently swallowed by `**kwargs`).

One exception keeps the implicit least-squares backward correct: it evaluates A at *detached aliases* of
the stored tensors (same memory, a fresh autograd leaf) to get their gradients. Such an alias holds the
stored values already, so it is used for that call and not stored — storing it would replace a learnable
filter (an nn.Parameter) by a detached copy.
"""

from __future__ import annotations

from torch import Tensor, nn


def store_tensor(module: nn.Module, name: str, value: Tensor, device=None) -> None:
    """Keep a learnable or upstream tensor as it is (so gradients reach it); move a constant one to `device`
    (default: where the tensor it replaces lives). An nn.Parameter stays a parameter, anything else is a
    buffer (so `.to()`, state dicts and `clone()` see it)."""
    if isinstance(value, nn.Parameter):
        module._buffers.pop(name, None)
        setattr(module, name, value)
        return
    current = getattr(module, name, None)
    if device is None and isinstance(current, Tensor):
        device = current.device
    module._parameters.pop(name, None)
    module.register_buffer(name, value if value.requires_grad or device is None else value.to(device))


def _same_memory(a: Tensor, b) -> bool:
    """b is a (possibly detached) alias of a: same storage, shape, strides and dtype, hence same values."""
    return isinstance(b, Tensor) and (a is b or (
        a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype
        and a.device == b.device))


class OperatorParameters:
    """Mixin for LinearPhysics: `parameter_names`, `update_parameters`, `update` and the keyword check."""

    parameter_names: tuple[str, ...] = ()  # operator tensors accepted by keyword (e.g. ("filter",))

    def check_parameter(self, name: str, value: Tensor) -> Tensor:
        """Validate (and normalise the shape of) a new value of operator tensor `name`; subclasses override."""
        if not isinstance(value, Tensor):
            raise TypeError(f"{type(self).__name__}: {name} must be a torch.Tensor, got {type(value).__name__}")
        return value

    def _unknown(self, where: str, names) -> ValueError:
        allowed = ", ".join(self.parameter_names) or "none"
        return ValueError(f"{type(self).__name__}.{where}: unknown keyword(s) {', '.join(sorted(names))}; this "
                          f"operator accepts: {allowed}")

    def _check_noise_keywords(self, where: str, names, accepted, also: str = "") -> None:
        """Keywords meant for the noise model must be ones it declares (`accepted`); else one line naming
        what the operator and its noise model accept."""
        unknown = set(names) - set(accepted)
        if unknown:
            raise ValueError(f"{type(self).__name__}{where}: unknown keyword(s) {', '.join(sorted(unknown))}; the "
                             f"operator accepts {', '.join(self.parameter_names) or 'none'}, its noise model "
                             f"{type(self.noise_model).__name__} {', '.join(accepted) or 'none'}{also}")

    def update_parameters(self, **params) -> None:
        """Validate and store new operator tensors (None values are skipped, as in the reference)."""
        unknown = params.keys() - set(self.parameter_names)
        if unknown:
            raise self._unknown("update_parameters", unknown)
        for name, value in params.items():
            if value is not None:
                store_tensor(self, name, self.check_parameter(name, value))

    def update(self, noise_model: nn.Module | None = None, **params) -> None:
        """Update operator tensors and the noise model's parameters (e.g. `sigma`) in one call, as in the
        reference; `noise_model=` replaces the noise model itself."""
        if noise_model is not None:
            self.set_noise_model(noise_model)
        noise = {k: params.pop(k) for k in list(params) if k not in self.parameter_names}
        if noise:
            self._check_noise_keywords(".update", noise, getattr(self.noise_model, "parameter_names", ()),
                                       ", and noise_model")
            self.noise_model.update_parameters(**noise)
        self.update_parameters(**params)

    def set_noise_model(self, noise_model: nn.Module) -> None:
        if not callable(noise_model):
            raise TypeError(f"noise_model must be a module such as GaussianNoise(0.1), got "
                            f"{type(noise_model).__name__}")
        self.noise_model = noise_model

    def call_parameters(self, where: str, params: dict) -> dict:
        """Operator tensors given to `where` (A, A_adjoint, ...): the ones to use for this call only (aliases
        of the stored tensors, module docstring); every other one is stored first and read back from self."""
        unknown = params.keys() - set(self.parameter_names)
        if unknown:
            raise self._unknown(where, unknown)
        transient = {}
        for name, value in params.items():
            if value is None:
                continue
            if _same_memory(getattr(self, name), value):
                transient[name] = value
            else:
                store_tensor(self, name, self.check_parameter(name, value))
        return transient
