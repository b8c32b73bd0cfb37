"""The data the tests read from `../shared` (a sibling folder of the repository, not in a clone):
its paths, and the markers that skip a test, with the folder named, where that folder is missing.

Every test that reads `../shared` carries the marker of the folder it reads, so a clean clone
without `../shared` runs the rest of the suite.
"""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures"
DATASETS = SHARED / "datasets"
PRIOR_REFERENCE = SHARED / "prior_reference"
REGRESSION = SHARED / "regression"

needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="needs ../shared/fixtures")
needs_datasets = pytest.mark.skipif(not DATASETS.is_dir(), reason="needs ../shared/datasets")
needs_regression = pytest.mark.skipif(not REGRESSION.is_dir(), reason="needs ../shared/regression")
needs_prior_reference = pytest.mark.skipif(
    not PRIOR_REFERENCE.is_dir(), reason="needs ../shared/prior_reference"
)
