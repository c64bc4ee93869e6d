"""Every built-in backend and the example plugin pass the contract of neo_pinn.testing.BackendCompliance."""

from __future__ import annotations

import pytest

from neo_pinn import plugins
from neo_pinn.testing import BackendCompliance


class TestLsqCompliance(BackendCompliance):
    backend = "lsq"
    options = {"n_starts": 2, "max_iter": 40, "dt": 0.1}
    step_options = {"dt": 0.05}


class TestPinnCompliance(BackendCompliance):
    backend = "pinn"
    options = {"n_members": 2, "stage1_steps": 20, "stage2_steps": 20, "screen_candidates": 8, "screen_rounds": 2,
               "width": 16, "depth": 2, "batch_points": 64, "forward_check": True}


class TestGaCompliance(BackendCompliance):
    backend = "ga"
    options = {"pop_size": 8, "n_gen": 2, "screen": 0, "max_dt": 0.1,  # the default refinement, kept short:
               "refine_gens": 2, "refine_options": {"max_iter": 10}}
    step_options = {"max_dt": 0.05}


class TestExampleCompliance(BackendCompliance):
    backend = "random_search"
    options = {"n_samples": 64}
    step_options = {"dt": 0.125}

    @pytest.fixture(autouse=True)
    def _example_plugin(self, example_module):
        plugins.reset()
        plugins.register_plugin(example_module, name="example")
        yield
        plugins.reset()
