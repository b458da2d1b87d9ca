"""Test-suite guards shared by every test module."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_globals():
    """Fail loudly if a test leaks torch's default dtype to the tests after it."""
    dtype = torch.get_default_dtype()
    yield
    leaked = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    assert leaked == dtype, f"the test changed torch's default dtype to {leaked}"
