"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: The shared real recordings live beside the repository: ../shared/data/recordings
#: (override with the environment variable NEO_PINN_RECORDINGS).
RECORDINGS_DIR = Path(os.environ.get("NEO_PINN_RECORDINGS",
                                     Path(__file__).resolve().parents[2] / "shared" / "data" / "recordings"))


@pytest.fixture(scope="session")
def recordings_dir() -> Path:
    """Folder of the ten shared real recordings; skips the test when it is absent."""
    if not RECORDINGS_DIR.is_dir() or not any(RECORDINGS_DIR.glob("*.abf")):
        pytest.skip(f"the shared recordings folder ../shared/data/recordings is absent (looked in "
                    f"{RECORDINGS_DIR.name!r} beside the repository; set NEO_PINN_RECORDINGS to point elsewhere)")
    return RECORDINGS_DIR


#: the separately installable third-party template, loaded from its folder without installing it
EXAMPLE_PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "example_plugin"


@pytest.fixture(scope="session")
def example_module():
    """The example plugin's ``neo_pinn_example.plugin`` module (its models and backend, not yet registered)."""
    import importlib
    import sys

    sys.path.insert(0, str(EXAMPLE_PLUGIN_DIR))
    try:
        return importlib.import_module("neo_pinn_example.plugin")
    finally:
        sys.path.remove(str(EXAMPLE_PLUGIN_DIR))


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` where CUDA is absent (CI never has a GPU)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu); CPU paths are tested separately")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread():
    """The module's tests on one torch thread (deterministic, and polite to whatever else runs on the machine);
    modules ask for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_fhn_estimator():
    """One tiny FitzHugh–Nagumo amortized estimator (Rudi et al. 2022 set-up, 384 traces, 15 epochs), trained once
    per session on one torch thread (deterministic; the thread count is restored afterwards)."""
    import torch

    from neo_pinn_amortized.train import rudi2022_config, train_estimator

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_estimator(rudi2022_config(n=384, epochs=15, patience=15, seed=0, device="cpu"))
    finally:
        torch.set_num_threads(threads)
