"""A compliance test mixin every backend (built-in or third-party) should pass.

Use it from pytest::

    from neo_pinn.testing import BackendCompliance

    class TestMyBackend(BackendCompliance):
        backend = "my_backend"
        options = {"n_iter": 5}          # small and fast
        step_options = {"dt": 0.1}       # optional: make it integrate on a finer step than the sampling

The mixin fits short synthetic Morris–Lecar recordings with known truth and checks the contract, not the
accuracy: a complete result with states on the data's samples, provenance, determinism under a seed,
rejection of unknown options, the JSON round trip, several sweeps fitted jointly, the three forms of
``initial_state``, a sampling interval different from the integration step, and the way back into Neo:
:func:`neo_pinn.attach` onto the recording's Block and a NIX file round trip.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from ..api import get_backend, get_model, load_recording, synthetic_trace
from ..errors import ConfigurationError
from ..io.attach import attach, result_from_block
from ..io.convert import trace_to_signals
from ..problem import EstimationProblem
from ..result import EstimationResult

__all__ = ["synthetic_problem", "BackendCompliance"]


def synthetic_problem(model: str = "morris_lecar", preset: str = "snlc", free=("gCa",), duration: float = 120.0,
                      rate_hz: float = 5000.0, noise: str | None = "white:sigma=1mV", seed: int = 0,
                      init: dict | None = None, stimuli=(None,), initial_state: Any = "fit") -> EstimationProblem:
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
        Noise seed (sweep k uses seed + k).
    init : dict, optional
        Initial guesses (default 0.8 × truth).
    stimuli : sequence
        One sweep per entry: its injected current (pA constant, a stimulus spec, or None for the preset's).
    initial_state : "fit", "preset" or array_like
        See :class:`~neo_pinn.problem.EstimationProblem`.
    """
    m = get_model(model)
    traces = []
    for k, stimulus in enumerate(stimuli):
        tr, _ = synthetic_trace(m, preset=preset, duration=duration, rate_hz=rate_hz, noise=noise, seed=seed + k,
                                stimulus=stimulus)
        traces.append(dataclasses.replace(tr, sweep=k))
    truth = m.param_values(preset)
    init = init if init is not None else {k: 0.8 * truth[k] for k in free}
    return EstimationProblem.build(m, traces, list(free), preset=preset, init=init,
                                   truth={k: truth[k] for k in free}, initial_state=initial_state)


class BackendCompliance:
    """Mixin of contract tests; set ``backend`` (name), ``options`` (fast settings) and, optionally,
    ``step_options`` (settings that make the backend integrate with a step finer than the sampling interval)."""

    backend: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    step_options: ClassVar[dict[str, Any]] = {}

    def _fit(self, problem: EstimationProblem | None = None, seed: int = 0, **extra: Any) -> tuple[EstimationProblem,
                                                                                                 EstimationResult]:
        problem = problem if problem is not None else synthetic_problem()
        options = dict(self.options) | extra
        return problem, get_backend(self.backend)(**options).fit(problem, seed=seed, device="cpu")

    @staticmethod
    def _check_complete(problem: EstimationProblem, res: EstimationResult, backend: str) -> None:
        assert isinstance(res, EstimationResult)
        assert res.backend == backend and res.model == problem.model.name
        assert list(res.parameters) == list(problem.model.param_names)
        for f in problem.free:
            p = res[f.name]
            assert p.free and np.isfinite(p.value)
            assert f.bounds[0] <= p.value <= f.bounds[1], f"{f.name}={p.value} outside its bounds"
        for name, value in problem.fixed.items():
            assert res[name].value == value and not res[name].free
        assert len(res.fits) == len(problem.traces)
        for fit, tr in zip(res.fits, problem.traces):
            assert fit.sweep == tr.sweep
            assert fit.states.shape == (tr.t.size, problem.model.n_states), "states must sit on the trace's samples"
            assert np.all(np.isfinite(fit.states))
            np.testing.assert_array_equal(fit.t, tr.t)
        assert res.state_names == problem.model.state_names
        assert all(isinstance(v, (bool, int, float, np.number)) for v in res.metrics.values())
        assert set(res.samples) <= set(problem.free_names)

    def test_result_is_complete(self):
        problem, res = self._fit()
        self._check_complete(problem, res, self.backend)
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
        assert back.metrics.keys() == res.metrics.keys() and back.samples == res.samples
        np.testing.assert_allclose(back.fits[0].states, res.fits[0].states)

    def test_several_sweeps_are_fitted_jointly(self):
        problem = synthetic_problem(stimuli=(None, 45.0), duration=100.0)
        _, res = self._fit(problem)
        self._check_complete(problem, res, self.backend)
        assert [f.sweep for f in res.fits] == [0, 1]
        assert not np.allclose(res.fits[0].i_ext, res.fits[1].i_ext)

    def test_initial_state_preset_and_vector(self):
        model = get_model("morris_lecar")
        for initial in ("preset", model.initial_state("snlc")):
            problem = synthetic_problem(initial_state=initial)
            _, res = self._fit(problem)
            self._check_complete(problem, res, self.backend)

    def test_sampling_interval_differs_from_the_integration_step(self):
        problem = synthetic_problem(rate_hz=2000.0)
        _, res = self._fit(problem, **self.step_options)
        self._check_complete(problem, res, self.backend)

    def test_attach_and_nix_round_trip(self, tmp_path):
        import neo

        problem = synthetic_problem()
        block = neo.Block(name="cell")
        seg = neo.Segment(name="sweep 0")
        seg.analogsignals.extend(trace_to_signals(problem.traces[0], name="Vm"))
        block.segments.append(seg)
        rec = load_recording(block)
        traces = rec.traces()
        problem = dataclasses.replace(problem, traces=tuple(traces))
        _, res = self._fit(problem)
        n_before = len(rec.block.segments[0].analogsignals)
        attach(res, rec.block)
        added = rec.block.segments[0].analogsignals[n_before:]
        assert len(added) >= 1 and all(s.shape[0] == traces[0].t.size for s in added)
        path = tmp_path / "fit.nix"
        with neo.io.NixIO(str(path), mode="ow") as io:
            io.write_block(rec.block)
        with neo.io.NixIO(str(path), mode="ro") as io:
            back = result_from_block(io.read_block())
        assert back.run_id == res.run_id and back.backend == self.backend
        for name, p in res.parameters.items():
            assert back[name].value == p.value
        np.testing.assert_allclose(back.fits[0].states, res.fits[0].states, rtol=1e-6, atol=1e-9)
