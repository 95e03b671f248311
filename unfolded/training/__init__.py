"""Training of unfolded models with Lightning and Hydra (`python train.py ...`).

Not imported by `import unfolded`: it needs lightning, hydra and torchmetrics.
"""

from .data import BundledDataModule, FolderDataModule, ImageDataModule
from .errors import ConfigError
from .module import UnfoldedModule

__all__ = ["BundledDataModule", "FolderDataModule", "ImageDataModule", "ConfigError", "UnfoldedModule"]
