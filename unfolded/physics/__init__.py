"""Forward operators: y = A x + noise, with adjoints and least-squares proximal steps."""

from . import blur, filters, functional
from .base import Denoising, LinearPhysics
from .blur import Blur, BlurFFT
from .composition import ComposedLinearPhysics
from .downsampling import Downsampling
from .inpainting import Inpainting
from .mri import MRI, MultiCoilMRI, birdcage_maps, equispaced_mask, random_mask
from .noise import GaussianNoise

__all__ = ["LinearPhysics", "Denoising", "Blur", "BlurFFT", "Inpainting", "GaussianNoise", "blur", "filters",
           "functional", "MRI", "MultiCoilMRI", "random_mask", "equispaced_mask", "birdcage_maps",
           "ComposedLinearPhysics", "Downsampling"]
