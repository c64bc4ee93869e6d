"""A compliance test mixin every backend (built-in or third-party) should pass.

Use it from pytest::

    from neo_pinn.testing import BackendCompliance

    class TestMyBackend(BackendCompliance):
        backend = "my_backend"
        options = {"n_iter": 5}          # small and fast

The mixin fits a short synthetic Morris–Lecar recording with known truth and checks the contract, not
the accuracy: a complete result, states on the data's grid, provenance, determinism under a seed,
rejection of unknown options, JSON round trip.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..api import get_backend, get_model, synthetic_trace
from ..errors import ConfigurationError
from ..problem import EstimationProblem
from ..result import EstimationResult

__all__ = ["synthetic_problem", "BackendCompliance"]


def synthetic_problem(model: str = "morris_lecar", preset: str = "snlc", free=("gCa",), duration: float = 120.0,
                      rate_hz: float = 5000.0, noise: str | None = "white:sigma=1mV", seed: int = 0,
                      init: dict | None = None) -> EstimationProblem:
    """A small estimation problem on a synthetic recording with known ground truth.

    Parameters
    ----------
    model, preset : str
        Registered model and preset.
    free : sequence of str
        Free parameters.
    duration : float
        ms.
    rate_hz : float
        Sampling rate in Hz.
    noise : str or None
        Observation noise spec.
    seed : int
        Noise seed.
    init : dict, optional
        Initial guesses (default 0.8 × truth).
    """
    m = get_model(model)
    tr, _ = synthetic_trace(m, preset=preset, duration=duration, rate_hz=rate_hz, noise=noise, seed=seed)
    truth = m.param_values(preset)
    init = init if init is not None else {k: 0.8 * truth[k] for k in free}
    return EstimationProblem.build(m, tr, list(free), preset=preset, init=init, truth={k: truth[k] for k in free})


class BackendCompliance:
    """Mixin of contract tests; set ``backend`` (name) and ``options`` (fast settings)."""

    backend: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}

    def _fit(self, seed: int = 0) -> tuple[EstimationProblem, EstimationResult]:
        problem = synthetic_problem()
        return problem, get_backend(self.backend)(**self.options).fit(problem, seed=seed, device="cpu")

    def test_result_is_complete(self):
        problem, res = self._fit()
        assert isinstance(res, EstimationResult)
        assert res.backend == self.backend and res.model == problem.model.name
        assert list(res.parameters) == list(problem.model.param_names)
        for name in problem.free_names:
            p = res[name]
            assert p.free and np.isfinite(p.value)
            lo, hi = next(f.bounds for f in problem.free if f.name == name)
            assert lo <= p.value <= hi, f"{name}={p.value} outside its bounds"
        for name, value in problem.fixed.items():
            assert res[name].value == value and not res[name].free
        assert len(res.fits) == len(problem.traces)
        for fit, tr in zip(res.fits, problem.traces):
            assert fit.states.shape == (tr.t.size, problem.model.n_states)
            assert np.all(np.isfinite(fit.states))
        assert res.state_names == problem.model.state_names
        for key in ("run_id", "seed", "device", "wall_time_s", "versions"):
            assert key in res.provenance

    def test_seeded_runs_are_deterministic(self):
        _, a = self._fit(seed=3)
        _, b = self._fit(seed=3)
        assert a.values == b.values

    def test_unknown_option_is_rejected(self):
        cls = get_backend(self.backend)
        try:
            cls(no_such_option_xyz=1)
        except ConfigurationError as exc:
            assert "no_such_option_xyz" in str(exc)
        else:  # pragma: no cover - a failing backend
            raise AssertionError("an unknown option must raise ConfigurationError")

    def test_json_round_trip(self):
        _, res = self._fit()
        back = EstimationResult.from_json(res.to_json())
        assert back.values == res.values
        np.testing.assert_allclose(back.fits[0].states, res.fits[0].states)
