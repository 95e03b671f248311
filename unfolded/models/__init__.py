"""Networks: denoisers used as priors (and, later, predefined unfolded architectures)."""

from .dncnn import DnCNN

__all__ = ["DnCNN"]
