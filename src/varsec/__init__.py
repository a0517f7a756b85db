"""varsec: security of visually-aware recommender systems."""

from importlib.metadata import PackageNotFoundError, version

from varsec.errors import VarsecError

try:
    __version__ = version("varsec")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

__all__ = ["VarsecError", "__version__"]
