"""Fixtures for the jobs' tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def skm():
    """scikit-learn's metrics, the reference the sweep, metrics and compare tests check against.
    Imported when a test asks, not at collection: every pytest-xdist worker collects every
    module, and the import costs about a second each."""
    from sklearn import metrics

    return metrics
