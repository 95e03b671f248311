"""Networks: denoisers used as priors (and, later, predefined unfolded architectures)."""

from .dncnn import DnCNN
from .drunet import DRUNet
from .modl import MoDL
from .pdnet import PDNet, PDNet_DualBlock, PDNet_PrimalBlock
from .unet import UNet
from .varnet import SensitivityModel, VarNet

__all__ = ["DnCNN", "DRUNet", "UNet", "MoDL", "VarNet", "SensitivityModel", "PDNet", "PDNet_PrimalBlock",
           "PDNet_DualBlock"]
