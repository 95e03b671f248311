"""Benchmark cases: build a model, a physics and data, return one training step (forward + backward).

The floor of a case is the same network without data steps: K chained DnCNN forward passes and one
backward, at the same size. Everything else an unfolded step does is overhead over that floor.
"""

from __future__ import annotations

import torch

import unfolded as dinv
from unfolded.physics.blur import gaussian_blur

DEFAULTS = dict(algo="hqs", physics="blur_valid", size=256, batch=1, channels=1, K=5, implicit=True,
                cg_max_iter=50, cg_tol=1e-4, deq=False, depth=8, nf=32, device="cpu", padding="valid",
                dtype="float32", simulate=None)


def _physics(spec):
    kernel = gaussian_blur(1.6)
    common = dict(max_iter=spec["cg_max_iter"], tol=spec["cg_tol"], implicit_backward_solver=spec["implicit"],
                  noise_model=dinv.physics.GaussianNoise(0.02))
    if spec["physics"] == "blur_valid":  # the name of the default case; any padding may be asked for
        return dinv.physics.Blur(kernel, padding=spec["padding"], **common)
    if spec["physics"] == "blur_fft":
        size = (spec["channels"], spec["size"], spec["size"])
        return dinv.physics.BlurFFT(size, kernel, noise_model=dinv.physics.GaussianNoise(0.02))
    if spec["physics"] == "denoise":
        return dinv.physics.Denoising(dinv.physics.GaussianNoise(0.1))
    raise ValueError(f"unknown physics {spec['physics']!r}")


class Floor(torch.nn.Module):
    """K chained denoiser passes: the cost no unfolded network with this denoiser can go below."""

    def __init__(self, denoiser, K):
        super().__init__()
        self.denoiser, self.K = denoiser, K

    def forward(self, y, physics):
        x = y
        for _ in range(self.K):
            x = self.denoiser(x)
        return x


def _simulated_step(spec: dict, model, x):
    """A training step that also simulates its batch as training does (unfolded.training.simulation): the
    run's one operator ("fixed": a 15x15 Gaussian kernel, noise 0.03, each sample simulated alone as training
    does today; "fixed_batched": the same operator applied once to the batch, as the per-sample path does) or,
    per sample, a Gaussian or motion kernel of the same size and a noise level in [0.01, 0.05] ("per_sample",
    physics=blur_random's generator); fresh sample numbers at every step, as in training."""
    from unfolded.physics.generators import GaussianBlurGenerator, GeneratorMixture, MotionBlurGenerator, SigmaGenerator
    from unfolded.training import seeding
    from unfolded.training.operators import measure
    from unfolded.training.simulation import Simulator

    kernels = GeneratorMixture([GaussianBlurGenerator(15, 0.5, 2.5, isotropic=False, angle_max=180),
                                MotionBlurGenerator(15, sigma=0.35)], [0.5, 0.5])
    fixed = GaussianBlurGenerator(15).step(1, sigma=torch.tensor([1.6, 1.6]), angle=torch.tensor([0.0]))["filter"]
    physics = dinv.physics.Blur(fixed, padding="valid", use_fft=True, max_iter=spec["cg_max_iter"], tol=spec["cg_tol"],
                                noise_model=dinv.physics.GaussianNoise(0.03))
    generator = kernels + SigmaGenerator(0.01, 0.05) if spec["simulate"] == "per_sample" else None
    simulator = Simulator(physics, 0, 1234, generator)
    params = [p for p in model.parameters() if p.requires_grad]
    first = [0]

    def step():
        for p in params:
            p.grad = None
        numbers = torch.arange(first[0], first[0] + x.shape[0])
        first[0] += x.shape[0]
        if spec["simulate"] == "fixed_batched":
            physics_b, y = physics, measure(physics, x, [seeding.training_seed(0, n) for n in numbers.tolist()])
        else:
            physics_b, y = simulator.training(x, numbers)
        loss = (model(y, physics_b) - x).pow(2).mean()
        loss.backward()
        return loss

    return step


def build_step(spec: dict):
    spec = DEFAULTS | spec
    torch.manual_seed(0)
    device = torch.device(spec["device"])
    denoiser = dinv.models.DnCNN(spec["channels"], spec["channels"], depth=spec["depth"], nf=spec["nf"],
                                 last_layer_init="zero")
    x = torch.rand(spec["batch"], spec["channels"], spec["size"], spec["size"])
    physics = _physics(spec)
    y = physics(x)
    if spec["algo"] == "floor":
        model = Floor(denoiser, spec["K"])
        y = x + 0.02 * torch.randn_like(x)
    else:
        cls = {"hqs": dinv.optim.HQS, "pgd": dinv.optim.PGD}[spec["algo"]]
        deq = None
        if spec["deq"]:  # True: DEQConfig defaults with Anderson forward; a dict: DEQConfig arguments
            deq = dinv.optim.DEQConfig(**({"anderson_acceleration_forward": True} | (spec["deq"] if
                                          isinstance(spec["deq"], dict) else {})))
        model = cls(prior=dinv.optim.PnP(denoiser), data_fidelity=dinv.optim.L2(), stepsize=1.0,
                    max_iter=spec["K"], unfold=True, trainable_params=["stepsize"], DEQ=deq)
    if spec.get("weights"):  # a trained model's state dict (bench_deq: the solves on trained weights)
        model.load_state_dict(torch.load(spec["weights"], weights_only=True))
    dtype = getattr(torch, spec["dtype"])
    if spec["simulate"]:
        return _simulated_step(spec, model, x), model
    model, physics = model.to(device, dtype), physics.to(device, dtype)
    x, y = x.to(device, dtype), y.to(device, dtype)
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        for p in params:
            p.grad = None
        loss = (model(y, physics) - x).pow(2).mean()
        if getattr(model, "deq_jacobian_loss", None) is not None:  # DEQConfig(jacobian_reg > 0): as training adds it
            loss = loss + model.deq_jacobian_loss
        loss.backward()
        return loss

    return step, model
