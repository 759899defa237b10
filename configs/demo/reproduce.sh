#!/usr/bin/env bash
# Reproduces the demo cascade shipped in weights/demo: trains the nine recipes of this folder in order
# (each resumes from its last checkpoint under runs/demo/, so the command can be re-run after a stop),
# then assembles the four stages with their sampling settings into OUT (default runs/demo/cascade).
#   bash configs/demo/reproduce.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-runs/demo/cascade}"
cascade train \
  configs/demo/1_text_to_image.yaml \
  configs/demo/2_keyframes.yaml \
  configs/demo/2b_keyframes_red_circles.yaml \
  configs/demo/2c_keyframes_whole_world.yaml \
  configs/demo/3_interpolation.yaml \
  configs/demo/3b_interpolation_blend.yaml \
  configs/demo/4_super_resolution_2d.yaml \
  configs/demo/5_spatiotemporal_sr.yaml \
  configs/demo/6_spatial_sr.yaml
cascade assemble "$out" \
  --keyframes runs/demo/keyframes_whole_world/model \
  --interpolation runs/demo/interpolation_blend/model \
  --spatiotemporal-sr runs/demo/spatiotemporal_sr/model \
  --spatial-sr runs/demo/spatial_sr/model \
  --stage-defaults configs/demo/sampling.yaml
