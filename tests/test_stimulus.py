"""Stimulus specs (parse, evaluate, round trip), step summaries and source comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neo_pinn.errors import NeoPinnError, StimulusError
from neo_pinn.io.stimulus_specs import (
    StimulusSpec,
    compare_stimuli,
    describe_step_family,
    describe_steps,
    parse_stimulus,
    step_amplitudes,
    summarize_steps,
)

T = np.arange(0.0, 1000.0, 0.1)  # ms


# ---------------------------------------------------------------------- parsing and evaluation
def test_step_with_units():
    spec = parse_stimulus("step:amp=48pA,start=100ms,stop=900ms")
    assert spec.kind == "step"
    assert spec.get("amp") == 48.0 and spec.get("start") == 100.0 and spec.get("stop") == 900.0
    i = spec(T)
    assert i[T < 100].max() == 0.0 and np.all(i[(T >= 100) & (T < 900)] == 48.0) and i[T >= 900].max() == 0.0


def test_units_are_converted():
    spec = parse_stimulus("step:amp=0.1nA,start=0.1s,stop=0.9s,base=-5pA")
    assert spec.get("amp") == pytest.approx(100.0)
    assert spec.get("start") == pytest.approx(100.0) and spec.get("stop") == pytest.approx(900.0)
    assert spec(np.array([50.0, 500.0])) == pytest.approx([-5.0, 95.0])
    # no units: canonical pA and ms
    assert parse_stimulus("step:amp=48,start=100,stop=900") == parse_stimulus("step:amp=48pA,start=100ms,stop=900ms")


def test_step_defaults_open_ended():
    spec = parse_stimulus("step:amp=20pA,start=10ms")
    assert spec.get("stop") == math.inf
    assert spec(np.array([0.0, 10.0, 1e6])) == pytest.approx([0.0, 20.0, 20.0])
    # neither edge: a constant current written as a step is refused (const:amp=... says it)
    with pytest.raises(StimulusError, match="neither start nor stop.*const:amp=20pA"):
        parse_stimulus("step:amp=20pA")


@pytest.mark.parametrize("text", ["const:amp=60pA", "constant:amp=60pA", "CONST: amp = 0.06 nA"])
def test_constant(text):
    spec = parse_stimulus(text)
    assert spec.kind == "const" and np.all(spec(T) == pytest.approx(60.0))


def test_ramp():
    spec = parse_stimulus("ramp:start=100ms,stop=600ms,from=0pA,to=200pA")
    assert spec(np.array([50.0, 100.0, 350.0, 599.9, 600.0])) == pytest.approx([0.0, 0.0, 100.0, 199.96, 0.0])
    with_base = parse_stimulus("ramp:start=100ms,stop=600ms,from=-50pA,to=50pA,base=10pA")
    assert with_base(np.array([0.0, 100.0])) == pytest.approx([10.0, -50.0])


def test_pulses():
    spec = parse_stimulus("pulses:amp=500pA,start=100ms,width=2ms,period=10ms,n=3")
    i = spec(T)
    on = T[i > 0]
    assert on.min() == pytest.approx(100.0) and on.max() == pytest.approx(121.9)
    assert np.sum(np.diff((i > 0).astype(int)) == 1) == 3
    unlimited = parse_stimulus("pulses:amp=1nA,width=1ms,period=100ms")
    assert np.sum(np.diff((unlimited(T) > 0).astype(int)) == 1) == 9  # plus the one at t=0
    assert unlimited(np.array([0.0]))[0] == pytest.approx(1000.0)


@pytest.mark.parametrize("text", ["zero", "none", "ZERO"])
def test_zero(text):
    spec = parse_stimulus(text)
    assert spec.kind == "zero" and not spec(T).any() and spec.to_string() == "zero"


@pytest.mark.parametrize("text", [
    "step:amp=48pA,start=100ms,stop=900ms",
    "step:amp=-12.5pA,start=0.25ms,stop=1000.125ms,base=3pA",
    "const:amp=60pA",
    "ramp:start=100ms,stop=600ms,from=0pA,to=200pA",
    "ramp:start=100ms,stop=600ms,from=0pA,to=200pA,base=-7pA",
    "pulses:amp=500pA,start=100ms,width=2ms,period=10ms,n=20",
    "pulses:amp=500pA,width=2ms,period=10ms",
    "zero",
])
def test_to_string_round_trip(text):
    spec = parse_stimulus(text)
    assert parse_stimulus(spec.to_string()) == spec
    assert spec.to_string() == text  # canonical text reads back identically
    assert parse_stimulus(spec) is spec
    assert str(spec) == spec.to_string()


def test_round_trip_of_converted_units():
    spec = parse_stimulus("step:amp=0.1nA,start=0.1s,stop=0.9s")
    assert spec.to_string() == "step:amp=100pA,start=100ms,stop=900ms"
    assert parse_stimulus(spec.to_string()) == spec


def test_torch_tensor_in_torch_tensor_out():
    torch = pytest.importorskip("torch")
    for text in ("step:amp=48pA,start=100ms,stop=900ms", "ramp:start=100ms,stop=600ms,from=0pA,to=200pA",
                 "pulses:amp=500pA,start=100ms,width=2ms,period=10ms,n=3", "const:amp=60pA", "zero"):
        spec = parse_stimulus(text)
        t = torch.linspace(0.0, 999.0, 1000, dtype=torch.float64)
        out = spec(t)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.shape == t.shape
        assert np.allclose(out.numpy(), spec(t.numpy()))
        out32 = spec(t.float())
        assert out32.dtype == torch.float32


def test_csv(tmp_path):
    f = tmp_path / "stim.csv"
    f.write_text("t_ms,i_pA\n0,0\n100,0\n100.1,50\n900,50\n900.1,0\n")
    for spec in (parse_stimulus(f"csv:{f}"), parse_stimulus(str(f)), parse_stimulus(f)):
        assert spec.kind == "csv"
        assert spec(np.array([50.0, 500.0, 950.0, 2000.0])) == pytest.approx([0.0, 50.0, 0.0, 0.0])
        assert parse_stimulus(spec.to_string()) == spec
    no_header = tmp_path / "plain.csv"
    no_header.write_text("0 10\n10 20\n")
    # each row holds until the next (zero-order hold, as an amplifier applies a sampled command)
    assert parse_stimulus(no_header)(np.array([5.0])) == pytest.approx([10.0])
    torch = pytest.importorskip("torch")
    out = parse_stimulus(no_header)(torch.tensor([5.0], dtype=torch.float32))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and float(out[0]) == pytest.approx(10.0)


@pytest.mark.parametrize("text, match", [
    ("", "Empty"),
    ("square:amp=1pA", "Unknown stimulus kind"),
    ("step:start=100ms", "lacks amp"),
    ("step:amp=48pA,begin=100ms", "no parameter 'begin'"),
    ("step:amp=48mV", "amp"),
    ("step:amp=48pA,start=1nA", "start"),
    ("step:amp=fortyeight", "amp"),
    ("step:amp", "key=value"),
    ("step:amp=1pA,amp=2pA", "twice"),
    ("step:amp=1pA,start=900ms,stop=100ms", "stop must come after start"),
    ("ramp:start=0ms,stop=10ms,from=0pA", "lacks to"),
    ("pulses:amp=1pA,width=0ms,period=10ms", "positive"),
    ("pulses:amp=1pA,width=1ms,period=10ms,n=2.5", "whole number"),
    ("zero:amp=1pA", "no parameter"),
])
def test_bad_specs(text, match):
    with pytest.raises(StimulusError, match=match) as err:
        parse_stimulus(text)
    assert isinstance(err.value, NeoPinnError)
    if "Unknown" in match or "no parameter" in match or "lacks" in match:
        assert "step:amp=48pA,start=100ms,stop=900ms" in str(err.value)  # shows the accepted syntax


def test_bad_csv(tmp_path):
    with pytest.raises(StimulusError, match="does not exist"):
        parse_stimulus(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("t,i\n0,1\nx,y\n")
    with pytest.raises(StimulusError, match="line 3"):
        parse_stimulus(bad)
    short = tmp_path / "short.csv"
    short.write_text("0,1\n")
    with pytest.raises(StimulusError, match="fewer than two"):
        parse_stimulus(short)
    backwards = tmp_path / "back.csv"
    backwards.write_text("0,1\n0,2\n")
    with pytest.raises(StimulusError, match="increase"):
        parse_stimulus(backwards)
    with pytest.raises(StimulusError):
        parse_stimulus(3.5)


def test_spec_is_frozen():
    spec = parse_stimulus("const:amp=1pA")
    with pytest.raises(AttributeError):
        spec.kind = "zero"
    with pytest.raises(StimulusError):
        StimulusSpec("square")


# ---------------------------------------------------------------------- summaries
def _protocol(amp, t=T):
    return np.where((t >= 147.0) & (t < 647.0), amp, 0.0) + np.where((t >= 800) & (t < 900), -50.0, 0.0)


def test_summarize_steps_clean():
    epochs = summarize_steps(T, _protocol(30.0))
    assert [(round(e["start_ms"], 1), round(e["stop_ms"], 1), e["amplitude_pA"]) for e in epochs] == [
        (0.0, 147.0, 0.0), (147.0, 647.0, 30.0), (647.0, 800.0, 0.0), (800.0, 900.0, -50.0), (900.0, 1000.0, 0.0)]
    assert describe_steps(T, _protocol(30.0)) == "0 pA; 0.147–0.647 s: 30 pA; 0.647–0.8 s: 0 pA; 0.8–0.9 s: -50 pA; " \
                                                "0.9–1 s: 0 pA"
    assert describe_steps(epochs) == describe_steps(T, _protocol(30.0))


def test_summarize_steps_noisy_with_glitches():
    rng = np.random.default_rng(0)
    x = _protocol(100.0) + rng.normal(0.0, 3.0, T.size)
    x[[1000, 5000, 5001, 8500]] += 400.0  # single-sample glitches
    epochs = summarize_steps(T, x)
    assert len(epochs) == 5
    assert [round(e["amplitude_pA"] / 10) * 10 for e in epochs] == [0, 100, 0, -50, 0]
    assert epochs[1]["start_ms"] == pytest.approx(147.0, abs=0.5)
    assert epochs[1]["stop_ms"] == pytest.approx(647.0, abs=0.5)


def test_summarize_steps_ramp_and_constant():
    ramp = parse_stimulus("ramp:start=100ms,stop=600ms,from=0pA,to=200pA")(T)
    epochs = summarize_steps(T, ramp)
    kinds = [e["kind"] for e in epochs]
    assert "ramp" in kinds and len(epochs) <= 4
    r = epochs[kinds.index("ramp")]
    assert r["from_pA"] == pytest.approx(0.0, abs=1.0) and r["to_pA"] == pytest.approx(200.0, abs=1.0)
    assert "ramp" in describe_steps(epochs)
    flat = summarize_steps(T, np.full(T.size, 12.0))
    assert len(flat) == 1 and flat[0]["amplitude_pA"] == 12.0 and describe_steps(flat) == "12 pA"
    assert summarize_steps([], []) == []


def test_summarize_pulse_train():
    spec = parse_stimulus("pulses:amp=500pA,start=100ms,width=2ms,period=10ms,n=20")
    t = np.arange(0.0, 500.0, 0.04)
    rng = np.random.default_rng(2)
    epochs = summarize_steps(t, spec(t) + 80.0 + rng.normal(0.0, 3.0, t.size))
    assert [e["kind"] for e in epochs] == ["step", "pulses", "step"]
    train = epochs[1]
    assert train["n"] == 20 and train["amplitude_pA"] == pytest.approx(580.0, abs=2.0)
    assert train["base_pA"] == pytest.approx(80.0, abs=2.0)
    assert train["width_ms"] == pytest.approx(2.0, abs=0.1) and train["period_ms"] == pytest.approx(10.0, abs=0.1)
    text = describe_steps(epochs)
    assert "0.1–0.292 s: 20 pulses of" in text and "(2 ms every 10 ms)" in text


def test_step_amplitudes_family_with_zero_step():
    family = [(T, _protocol(a)) for a in (-50.0, -25.0, 0.0, 25.0, 50.0)]
    out = step_amplitudes(family)
    assert out["method"] == "varying-epoch"
    assert out["amplitudes_pA"] == pytest.approx([-50.0, -25.0, 0.0, 25.0, 50.0])
    assert out["window_ms"] == pytest.approx([147.0, 647.0])
    assert describe_step_family(out["amplitudes_pA"]) == "steps -50 to +50 pA (+25 pA per sweep)"
    with_missing = step_amplitudes([family[0], None, family[2]])
    assert with_missing["amplitudes_pA"][1] is None and with_missing["amplitudes_pA"][2] == pytest.approx(0.0)


def test_step_amplitudes_single_sweep_and_texts():
    one = step_amplitudes([(T, _protocol(30.0))])
    assert one["method"] == "first-departure" and one["amplitudes_pA"] == pytest.approx([30.0])
    flat = step_amplitudes([(T, np.full(T.size, 5.0))])
    assert flat["amplitudes_pA"] == pytest.approx([5.0])
    assert describe_step_family([-2000.0 + 200 * k for k in range(16)]) == "steps -2 to +1 nA (+0.2 nA per sweep)"
    assert describe_step_family([None, None]) == "no stimulus"
    assert describe_step_family([30.0]) == "step 30 pA"
    assert describe_step_family([10.0, 10.0]).startswith("constant")
    assert describe_step_family([0.0, 5.0, 20.0]) == "steps 0 to +20 pA"


def test_compare_stimuli():
    a = _protocol(100.0)
    assert compare_stimuli(a, a)["agree"]
    # a recorded copy: noisy, offset by a few pA, edges late by 2 samples with a filtered tail
    rng = np.random.default_rng(1)
    b = np.roll(a, 2) + 4.0 + rng.normal(0.0, 2.0, a.size)
    assert compare_stimuli(a, b, dt_ms=0.1)["agree"]
    # a missing 2 ms pulse is a disagreement
    c = a.copy()
    c[(T >= 300) & (T < 302)] += 400.0
    res = compare_stimuli(a, c, dt_ms=0.1)
    assert not res["agree"] and res["max_abs_diff_pA"] == pytest.approx(400.0)
    assert not compare_stimuli(a, -a)["agree"]
    assert not compare_stimuli(a, a[:-1])["agree"]
