"""Data layer: item catalogs, interactions, loaders for real formats, the simulator and splits."""

from varsec.data.catalog import Dataset, Interactions, ItemCatalog
from varsec.data.fashion_mnist import load_fashion_mnist
from varsec.data.simulate import (
    PROFILES,
    SimulationProfile,
    pixel_style_vectors,
    simulate,
    simulate_and_split,
)
from varsec.data.splits import KCoreSummary, k_core, leave_one_out

__all__ = [
    "PROFILES",
    "Dataset",
    "Interactions",
    "ItemCatalog",
    "KCoreSummary",
    "SimulationProfile",
    "k_core",
    "leave_one_out",
    "load_fashion_mnist",
    "pixel_style_vectors",
    "simulate",
    "simulate_and_split",
]
