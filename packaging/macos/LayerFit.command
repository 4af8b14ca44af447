#!/bin/bash
# Double-click in Finder to start LayerFit (sets up .venv the first time through `make run`).
cd "$(dirname "$0")/../.." || exit 1
if [ -x .venv/bin/layerfit-gui ] && [ -f .venv/.layerfit-setup ]; then
  exec .venv/bin/layerfit-gui
fi
exec make run
