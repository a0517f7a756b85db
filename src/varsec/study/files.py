"""The names of the files stage outputs hold, declared once (every stage and the report read
them from here). What each holds is in the module docstring of the stage that writes it."""

ADVERSARIAL = "adversarial.npy"  # attack: uint8 N x C x H x W adversarial images
ITEMS = "items.npy"  # attack: int64 catalog indices of the attacked items
PAIRS = "pairs.npy"  # item-to-item attack: int64 P x 2 (attack item, target item)
LISTS = "lists.npz"  # per-user attack: the users and their sampled lists it attacked
CATALOG = "catalog.npy"  # defense applied to every image: the defended uint8 catalog
COOPERATIVE = "cooperative.npy"  # defense: the defended cooperative images
CONVERGENCE = "convergence.npz"  # attack: the objective per step (mean and quantiles)
DISTANCES = "distances.npz"  # reconstruction fit: detector distances of its calibration set
EXTRACTOR = "extractor.pt"  # extractor: the trained backbone's checkpoint
FEATURES = "features.npy"  # extractor: float32 N x D catalog features
ITEM_MEASURES = "item_measures.parquet"  # attack: per attacked item and metric its value
MODEL = "model.pt"  # recommender: the fitted model's checkpoint
PROBES = "probes.npy"  # query-only promotion attack: the probe accounts (left out of evaluation)

__all__ = ["ADVERSARIAL", "CATALOG", "CONVERGENCE", "COOPERATIVE", "DISTANCES", "EXTRACTOR",
           "FEATURES", "ITEMS", "ITEM_MEASURES", "LISTS", "MODEL", "PAIRS", "PROBES"]
