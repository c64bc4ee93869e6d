"""write_icephys_nwb(): synthetic sweeps as an NWB icephys file that Neo and pynwb read back."""

from __future__ import annotations

import datetime
import json
import warnings

import neo
import numpy as np
import pytest
import pynwb
from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

from neo_pinn.errors import ConfigurationError, RecordingFormatError
from neo_pinn.io.synthetic_nwb import read_icephys_metadata, write_icephys_nwb
from neo_pinn.trace import Trace

METADATA = {
    "model": "morris_lecar", "preset": "snlc", "true_parameters": {"g_Ca": 4.0, "C": 20.0},
    "noise": {"kind": "white", "sigma_mV": 1.0}, "seed": 1234, "command": "neo-pinn simulate --model morris_lecar",
    "units": {"g_Ca": "nS", "C": "pF"}, "arr": np.array([1.5, 2.5]),
}


def traces(n: int = 2) -> list[Trace]:
    out = []
    t = np.arange(1500) * 0.1  # ms; 10 kHz
    for k in range(n):
        v = -60.0 + 30.0 * np.sin(t / (3.0 + k)) + 0.123456789 * k
        i = np.where((t >= 20) & (t < 120), 45.5 + 10.0 * k, 0.0)
        out.append(Trace(t=t, v=v, i_ext=i, sweep=k, stimulus_source="simulation"))
    return out


def read_neo(path) -> neo.Block:
    io = neo.io.NWBIO(str(path), mode="r")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return io.read_all_blocks()[0]
    finally:
        io.close()


def test_neo_reads_the_samples_back(tmp_path):
    trs = traces()
    path = write_icephys_nwb(tmp_path / "sim.nwb", trs, metadata=METADATA)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim.nwb"]  # no temporary left behind
    blk = read_neo(path)
    sigs = {a.name: a for seg in blk.segments for a in seg.analogsignals}
    assert set(sigs) == {"ic__sim__0", "ic__sim__1", "ics__sim__0", "ics__sim__1"}
    ends = []
    for tr in trs:
        v, i = sigs[f"ic__sim__{tr.sweep}"], sigs[f"ics__sim__{tr.sweep}"]
        np.testing.assert_array_equal(v.rescale("mV").magnitude[:, 0], tr.v)  # float64, conversion 1e-3 exactly
        np.testing.assert_allclose(i.rescale("pA").magnitude[:, 0], tr.i_ext, rtol=1e-12, atol=0)
        for s in (v, i):
            assert float(s.sampling_rate.rescale("Hz")) == pytest.approx(10_000.0)
            assert s.annotations["nwb:sweep_number"] == tr.sweep
        assert float(v.t_start) == float(i.t_start)
        ends.append((float(v.t_start.rescale("s")), float(v.t_stop.rescale("s"))))
    assert ends[0][1] <= ends[1][0]  # sweeps do not overlap
    assert json.loads(blk.annotations["notes"])["seed"] == 1234


def test_pynwb_reads_structure_and_metadata(tmp_path):
    path = write_icephys_nwb(tmp_path / "sim.nwb", traces(3), metadata=METADATA, identifier="sim-001")
    with pynwb.NWBHDF5IO(str(path), mode="r") as io:
        f = io.read()
        assert f.identifier == "sim-001"
        assert pynwb.validate(io=io) == []
        for k in range(3):
            resp, stim = f.acquisition[f"ic__sim__{k}"], f.stimulus[f"ics__sim__{k}"]
            assert isinstance(resp, CurrentClampSeries) and isinstance(stim, CurrentClampStimulusSeries)
            assert resp.sweep_number == stim.sweep_number == k
            assert (resp.unit, resp.conversion, stim.unit, stim.conversion) == ("volts", 1e-3, "amperes", 1e-12)
            assert resp.electrode is stim.electrode
        assert len(f.intracellular_recordings) == 3
        assert len(f.icephys_simultaneous_recordings) == 3 and len(f.icephys_sequential_recordings) == 1
        stored = json.loads(f.notes)
    expected = json.loads(json.dumps({**METADATA, "arr": [1.5, 2.5]}))
    assert stored == expected
    assert read_icephys_metadata(path) == expected


def test_refusals(tmp_path):
    path = write_icephys_nwb(tmp_path / "a.nwb", traces(1), metadata={"seed": 1})
    with pytest.raises(ConfigurationError, match="exists"):
        write_icephys_nwb(path, traces(1), metadata={"seed": 2})
    assert read_icephys_metadata(path) == {"seed": 1}
    write_icephys_nwb(path, traces(1), metadata={"seed": 2}, overwrite=True)
    assert read_icephys_metadata(path) == {"seed": 2}
    tr = traces(2)
    with pytest.raises(ConfigurationError, match="repeat"):
        write_icephys_nwb(tmp_path / "b.nwb", [tr[0], tr[0]], metadata={})
    t = np.r_[0.0, 0.1, 0.3, 0.4]
    with pytest.raises(ConfigurationError, match="uniformly"):
        write_icephys_nwb(tmp_path / "c.nwb", [Trace(t=t, v=np.zeros(4), i_ext=np.zeros(4))], metadata={})
    with pytest.raises(ConfigurationError, match="negative"):
        write_icephys_nwb(tmp_path / "d.nwb", [Trace(t=tr[0].t, v=tr[0].v, i_ext=tr[0].i_ext, sweep=-1)], metadata={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nwb"]


def test_metadata_of_a_foreign_file(tmp_path):
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    f = pynwb.NWBFile(session_description="x", identifier="y", session_start_time=start, notes="free text")
    with pynwb.NWBHDF5IO(str(tmp_path / "f.nwb"), mode="w") as io:
        io.write(f)
    with pytest.raises(RecordingFormatError, match="ground truth"):
        read_icephys_metadata(tmp_path / "f.nwb")
