"""Fixtures of the recsys tests: the planted dataset and one fitted model of each kind."""

from __future__ import annotations

import pytest
from recsys_helpers import FAST, PixelExtractor, planted_dataset


@pytest.fixture(scope="session")
def planted():
    return planted_dataset()


@pytest.fixture(scope="session")
def extractor():
    return PixelExtractor()



@pytest.fixture(scope="session")
def fitted(planted):
    """One fitted model of each kind on the planted dataset (shared by several tests)."""
    from varsec.recsys import AMR, BPRMF, DVBPR, VBPR, AlexRank, VisualKNN

    extractor = PixelExtractor()
    return {
        "bpr": BPRMF(factors=16, **FAST).fit(planted),
        "vbpr": VBPR(factors=8, visual_factors=8, **FAST).fit(planted, extractor=extractor),
        "vbpr-shared": VBPR(factors=8, shared_factors=True, **FAST).fit(
            planted, extractor=extractor),
        "amr": AMR(factors=8, visual_factors=8, **FAST).fit(planted, extractor=extractor),
        "dvbpr": DVBPR(factors=8, epochs=3, batch_size=64, early_stopping=False,
                       backbone_options={"widths": [8, 16, 16]}).fit(planted),
        "alexrank": AlexRank().fit(planted, extractor=extractor),
        "knn": VisualKNN(neighbours=10).fit(planted, extractor=extractor),
    }
