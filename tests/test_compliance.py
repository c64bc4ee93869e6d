"""Every installed backend passes the contract of neo_pinn.testing.BackendCompliance."""

from __future__ import annotations

from neo_pinn.testing import BackendCompliance


class TestLsqCompliance(BackendCompliance):
    backend = "lsq"
    options = {"n_starts": 2, "max_iter": 40, "dt": 0.1}
