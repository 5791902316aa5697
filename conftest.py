"""Shared by the tests and the API's doctests: no test touches the user's own files."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _own_cost_model(tmp_path_factory):
    """Tests (and the processes they start) never read nor write the user's calibrated
    cost model: every run chooses methods with the shipped one."""
    from pwfilter import costs

    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    costs.current.cache_clear()
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old
    costs.current.cache_clear()
