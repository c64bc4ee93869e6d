"""A Neo/Elephant script that fits a neuron model with neo_pinn and keeps everything in Neo.

Read an ABF with ``neo.io.AxonIO``, detect the recorded spikes with Elephant, fit Morris–Lecar, attach the
reconstruction (one AnalogSignal per state) to the same Block, run Elephant on the reconstructed signals,
write the Block with ``neo.io.NixIO`` and read the fit back from the file. No conversion by hand: every
physical argument is a quantity.

Run it on the bundled sample (an ABF1 file without a protocol, so the step is given)::

    python examples/neo_elephant_workflow.py sample_data/ml_snlc.abf fit.nix

An ABF2 file with its protocol needs no ``--step``: ``--protocol`` lets neo_pinn read the command from the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import neo
import quantities as pq
from elephant.signal_processing import butter
from elephant.spike_train_generation import threshold_detection
from elephant.statistics import mean_firing_rate

import neo_pinn
from neo_pinn import StimulusSpec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("abf", type=Path, help="an Axon .abf recording (current clamp)")
    ap.add_argument("out", type=Path, help="the NIX file to write (.nix; must not exist)")
    ap.add_argument("--sweep", type=int, default=0, help="sweep (Segment) to fit")
    ap.add_argument("--step", nargs=3, type=float, default=(60.0, 0.1, 0.9), metavar=("PA", "START_S", "STOP_S"),
                    help="the injected step (pA, and s from the sweep's start) when the file holds no protocol")
    ap.add_argument("--protocol", action="store_true", help="take the injected current from the file's protocol")
    args = ap.parse_args(argv)
    if args.out.exists():
        print(f"{args.out} exists; choose a new file.", file=sys.stderr)
        return 2

    # 1. Neo reads the file; nothing below changes what it read except attach(), which only appends.
    block = neo.io.AxonIO(str(args.abf)).read_block()
    vm = block.segments[args.sweep].analogsignals[0]
    sweep_start = vm.t_start

    # 2. Elephant on the recording: spikes in the fitted window (a time_slice, as Elephant users pick windows),
    #    low-passed first so that the recording noise does not cross the threshold twice on a slow upstroke.
    window = (sweep_start + 0.1 * pq.s, sweep_start + 0.4 * pq.s)
    smooth = butter(vm, lowpass_frequency=500 * pq.Hz)
    recorded_spikes = threshold_detection(smooth.time_slice(*window), threshold=-10 * pq.mV)
    print(f"recorded: {len(recorded_spikes)} spikes, {mean_firing_rate(recorded_spikes).rescale(pq.Hz):.1f}, "
          f"at {recorded_spikes.rescale(pq.ms).magnitude.round(1).tolist()} ms")

    # 3. Fit. The window is given from the sweep's start; the step (if any) in the sweep's time.
    amp, start, stop = args.step
    stimulus = "auto" if args.protocol else StimulusSpec.of("step", amp=amp * pq.pA, start=start * pq.s,
                                                            stop=stop * pq.s)
    result = neo_pinn.estimate(vm, "morris_lecar", "lsq", free=["gCa", "gK"], preset="snlc",
                               window=(0.1 * pq.s, 0.4 * pq.s), stimulus=stimulus,
                               values={"C": 0.02 * pq.nF}, bounds={"gCa": (1 * pq.nS, 0.016 * pq.uS)})
    print(result.summary())
    for name, p in result.free_parameters.items():
        print(f"{name} = {p.quantity:.4g} ± {p.std_quantity:.2g}; 95 % interval "
              f"{p.interval(0.95)[0]:.4g} … {p.interval(0.95)[1]:.4g}")

    # 4. Back into the same Block: the reconstructed V and the hidden gate n, each its own AnalogSignal.
    neo_pinn.attach(result, block)
    segment = block.segments[args.sweep]
    reconstructed = {s.annotations["neo_pinn_state"]: s for s in segment.filter(objects=neo.AnalogSignal)
                     if s.annotations.get("neo_pinn_run_id") == result.run_id}
    v_fit, n_gate = reconstructed["V"], reconstructed["n"]
    print(f"attached: {', '.join(f'{k} [{s.units.dimensionality.string}]' for k, s in reconstructed.items())}")

    # 5. Elephant on the reconstruction, as on any recorded signal.
    model_spikes = threshold_detection(v_fit, threshold=-10 * pq.mV)
    print(f"model:    {len(model_spikes)} spikes, {mean_firing_rate(model_spikes).rescale(pq.Hz):.1f}, "
          f"at {model_spikes.rescale(pq.ms).magnitude.round(1).tolist()} ms; "
          f"gate n between {float(n_gate.min()):.3f} and {float(n_gate.max()):.3f}")

    # 6. Plain NixIO writes the whole Block and reads it back; neo_pinn rebuilds the fit from the file.
    with neo.io.NixIO(str(args.out), mode="ow") as io:
        io.write_block(block)
    with neo.io.NixIO(str(args.out), mode="ro") as io:
        back = io.read_block()
    again = neo_pinn.result_from_block(back)
    params = neo_pinn.parameters_of(back)
    print(f"read back from {args.out.name}: run {again.run_id}, "
          + ", ".join(f"{k} = {params[k].quantity:.4g}" for k in result.free_parameters))
    return 0


if __name__ == "__main__":
    sys.exit(main())
