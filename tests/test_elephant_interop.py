"""Neo in, new Neo out: what attach() appends is usable by Elephant as any recorded signal is."""

from __future__ import annotations

import numpy as np
import pytest
import quantities as pq

import neo_pinn
from neo_pinn import EstimationProblem, EstimationResult
from neo_pinn.features import spike_times
from neo_pinn.io.convert import trace_to_signals

elephant_stg = pytest.importorskip("elephant.spike_train_generation")


def test_attached_reconstruction_feeds_elephant():
    import neo

    m = neo_pinn.get_model("morris_lecar")
    tr, states = neo_pinn.synthetic_trace(m, preset="snlc", duration=300, rate_hz=10000, noise="white:sigma=1mV")
    v_sig, i_sig = trace_to_signals(tr, name="Vm")
    v_sig.annotate(neo_pinn_role="voltage", neo_pinn_sweep=0)
    seg = neo.Segment()
    seg.analogsignals += [v_sig, i_sig]
    block = neo.Block()
    block.segments.append(seg)
    problem = EstimationProblem.build(m, tr, ["gCa"])
    result = EstimationResult.from_fit(problem, "manual", {"gCa": 4.0}, [states])
    neo_pinn.attach(result, block)
    recon = [s for s in seg.analogsignals if s.annotations.get("neo_pinn_role") == "reconstruction"]
    assert len(recon) == 1
    st = elephant_stg.threshold_detection(recon[0], threshold=0.0 * pq.mV, sign="above")
    ours = spike_times(states[:, 0], tr.t)
    assert len(st) == len(ours) > 0
    np.testing.assert_allclose(st.rescale("ms").magnitude, ours, atol=2 * tr.dt)
