#!/usr/bin/env bash
# Regenerates the bundled sample recordings and their JSON sidecars (true parameters + the command).
set -euo pipefail
cd "$(dirname "$0")"
neo-pinn simulate --model morris_lecar --preset snlc --stimulus "step:amp=60pA,start=100ms,stop=900ms" \
  --duration 1000 --rate 10000 --noise white:sigma=1mV --seed 7 --out ml_snlc.nwb --overwrite
neo-pinn simulate --model morris_lecar --preset snlc --stimulus "step:amp=60pA,start=100ms,stop=900ms" \
  --duration 1000 --rate 10000 --noise white:sigma=1mV --seed 7 --out ml_snlc.abf --overwrite
neo-pinn simulate --model hodgkin_huxley --preset tonic --stimulus "step:amp=10pA,start=20ms,stop=180ms" \
  --stimulus "step:amp=20pA,start=20ms,stop=180ms" --duration 200 --rate 20000 --noise white:sigma=1mV \
  --seed 11 --out hh_steps.nwb --overwrite
