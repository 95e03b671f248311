"""Training of unfolded models with Lightning and Hydra (`python train.py ...`).

Not imported by `import unfolded`: it needs lightning, hydra and torchmetrics. The names below are
loaded on first use, so that `train.py` can report a configuration error before importing torch.
"""

from importlib import import_module

_EXPORTS = {
    "BundledDataModule": ".data",
    "FolderDataModule": ".data",
    "ImageDataModule": ".data",
    "ConfigError": ".errors",
    "UnfoldedModule": ".module",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
