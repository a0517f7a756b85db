"""The EOT and BPDA hooks: attacking a model that sits behind an input transform (a defense).

A *transform* is any callable on float NCHW images in [0, 1] (JPEG, bit-depth reduction, median
smoothing, random resize + pad, ...). The attacked pipeline is ``model(transform(x))``:

* **EOT** (Athalye, Engstrom, Ilyas & Kwok, 2018, "Synthesizing robust adversarial examples"):
  for a random transform, the objective is averaged over ``eot_samples`` draws, so its gradient
  is the expectation of the gradient over the transform's randomness.
* **BPDA** (Athalye, Carlini & Wagner, 2018, "Obfuscated gradients give a false sense of
  security", sec 4.1): for a transform without a useful gradient, the forward pass uses the real
  transform and the backward pass a differentiable stand-in ``g`` with ``g(x) ≈ transform(x)``:
  ``g(x) + (transform(x) - g(x)).detach()``. ``bpda=True`` takes the identity as the stand-in
  (the straight-through estimator), ``bpda=callable`` a given one.

A defense is only reported robust against the attack that knows it (DESIGN.md section 8).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from varsec.errors import ConfigError
from varsec.params import check_int

Transform = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class TransformHook:
    """A transform applied before the model, with its EOT sample count and BPDA stand-in."""

    transform: Transform | None = None
    eot_samples: int = 1
    bpda: bool | Transform = False

    def __post_init__(self) -> None:
        if self.transform is not None and not callable(self.transform):
            raise ConfigError(
                "transform must be a callable on image batches, got "
                f"{type(self.transform).__name__}."
            )
        samples = check_int(self.eot_samples, "eot_samples", low=1)
        if samples > 1 and self.transform is None:
            raise ConfigError("eot_samples > 1 averages over a random transform; give transform=.")
        if self.bpda is not False and self.transform is None:
            raise ConfigError("bpda replaces a transform's backward pass; give transform= too.")
        if not isinstance(self.bpda, bool) and not callable(self.bpda):
            raise ConfigError(
                f"bpda must be true/false or a differentiable stand-in callable, got "
                f"{type(self.bpda).__name__}."
            )

    @property
    def draws(self) -> int:
        """How many transformed copies one objective evaluation averages over."""
        return self.eot_samples if self.transform is not None else 1

    def __call__(self, x: Tensor) -> Tensor:
        """One draw of ``transform(x)``, differentiable through the BPDA stand-in when set."""
        if self.transform is None:
            return x
        if self.bpda is False:
            return self.transform(x)
        stand_in = x if self.bpda is True else self.bpda(x)
        return stand_in + (self.transform(x.detach()) - stand_in).detach()


NO_TRANSFORM = TransformHook()

__all__ = ["NO_TRANSFORM", "Transform", "TransformHook"]
