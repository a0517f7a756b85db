"""Data layer: item catalogs, interactions, loaders for real formats, the simulator and splits."""

from varsec.data.catalog import Dataset, Interactions, ItemCatalog
from varsec.data.fashion_mnist import load_fashion_mnist

__all__ = ["Dataset", "Interactions", "ItemCatalog", "load_fashion_mnist"]
