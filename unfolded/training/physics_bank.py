"""One physics object per image size and device.

Most operators work on any image size and are built once. Operators whose constructor needs the image
size (`Inpainting(img_size=...)`, with `img_size: null` in the config) are built on demand for each
(C, H, W) met: training crops and full-size test images then each get their own (seeded) mask.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class PhysicsBank:
    def __init__(self, physics=None, factory: Callable[[tuple[int, int, int]], object] | None = None):
        if (physics is None) == (factory is None):
            raise ValueError("PhysicsBank: give a physics object or a factory img_size -> physics")
        self.fixed, self.factory = physics, factory
        self._cache: dict[tuple, object] = {}

    @classmethod
    def wrap(cls, physics) -> PhysicsBank:
        return physics if isinstance(physics, PhysicsBank) else cls(physics=physics)

    def get(self, x: Tensor):
        key = (tuple(x.shape[1:]) if self.factory is not None else None, x.device)
        if key not in self._cache:
            p = self.fixed if self.factory is None else self.factory(tuple(x.shape[1:]))
            if isinstance(p, torch.nn.Module):
                p = p.to(x.device)
            self._cache[key] = p
        return self._cache[key]

    def example(self, img_size: tuple[int, int, int]):
        """The physics for one image of size (C, H, W) on the CPU."""
        return self.get(torch.empty(1, *img_size))
