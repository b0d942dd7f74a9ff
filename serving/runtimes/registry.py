"""The model variants hybridserve can serve, by the names the catalog uses.

ImageNet variants are gluon model-zoo architectures built with `pretrained=False` (weights
cannot be downloaded here; a `.params` file gives real ones). The digits variants are small
gluon networks trained on first use on scikit-learn's bundled digits data (serving/digits.py),
so their accuracy is measured, not declared.
"""
from __future__ import annotations

from dataclasses import dataclass


class UnknownVariant(KeyError):
    """A variant name no runtime knows; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class ModelSpec:
    variant: str                        # catalog name, e.g. "squeezenet"
    family: str                         # "imagenet" | "digits"
    arch: str                           # gluon model-zoo name, or the digits architecture
    input_shape: tuple[int, int, int]   # C, H, W
    num_classes: int


_IMAGENET = (3, 224, 224)
# Catalog name -> gluon model-zoo name. Inception v3 takes 299×299 inputs; the others 224×224.
_ZOO: dict[str, tuple[str, tuple[int, int, int]]] = {
    "squeezenet": ("squeezenet1.0", _IMAGENET),
    "mobilenet": ("mobilenet1.0", _IMAGENET),
    "resnet18": ("resnet18_v1", _IMAGENET),
    "resnet50": ("resnet50_v1", _IMAGENET),
    "inception": ("inceptionv3", (3, 299, 299)),
    "vgg16": ("vgg16", _IMAGENET),
}

DIGITS_VARIANTS = ("digits-small", "digits-medium", "digits-large")

VARIANTS: dict[str, ModelSpec] = {
    **{name: ModelSpec(name, "imagenet", zoo, shape, 1000) for name, (zoo, shape) in _ZOO.items()},
    **{name: ModelSpec(name, "digits", name.split("-", 1)[1], (1, 8, 8), 10) for name in DIGITS_VARIANTS},
}


def list_variants() -> list[str]:
    """Every servable variant name, sorted."""
    return sorted(VARIANTS)


def spec_of(variant: str) -> ModelSpec:
    try:
        return VARIANTS[variant]
    except KeyError:
        raise UnknownVariant(f"unknown model variant {variant!r}; known: {', '.join(list_variants())}") from None


def imagenet_labels() -> tuple[str, ...]:
    """Labels for the 1000 ImageNet classes.

    No synset file ships with the installed packages and none can be downloaded, so classes are
    named by index ("imagenet-0", ...); pass `labels_path` to `load_model` for real names.
    """
    return tuple(f"imagenet-{i}" for i in range(1000))
