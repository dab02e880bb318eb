# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The trust lab for every test file of this target: a fresh one per file, removed after it."""

from __future__ import annotations

import pytest

from trustlab import Probe, TrustLab


@pytest.fixture(scope="module")
def lab():
    with TrustLab() as made:
        yield made


@pytest.fixture(scope="module")
def probe(lab):  # pylint: disable=redefined-outer-name
    """probe.py in the server namespace, as nobody; stopped with the lab."""
    return Probe(lab)
