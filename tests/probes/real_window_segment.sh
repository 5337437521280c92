#!/usr/bin/env bash
# Person-style check of #31's editor tools with real X events (xdotool) on the real window under
# Xvfb: intelligent scissors (I: anchors, Ctrl+Z removes the last, a click on the first closes) and
# SAM click-to-segment (S, a tiny ONNX pair). Usage: real_window_segment.sh WORKDIR PYTHON.
# Prints each step's label / proposal files and anchor counts; screenshots in WORKDIR.
set -u
W=$1; PY=$2; HERE=$(cd "$(dirname "$0")" && pwd); cd "$HERE/../.."; export PYTHONPATH=$PWD
rm -rf "$W/proj" "$W/pts.json" "$W/status.log" "$W/weights"; mkdir -p "$W"
N=$(for n in $(seq 141 190); do [ -e /tmp/.X11-unix/X$n ] || [ -e /tmp/.X$n-lock ] || { echo $n; break; }; done)
Xvfb ":$N" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 & XV=$!
trap 'kill $APP $XV 2>/dev/null' EXIT
for i in $(seq 50); do [ -e /tmp/.X11-unix/X$N ] && break; sleep 0.1; done
export DISPLAY=":$N" QT_QPA_PLATFORM=xcb
"$PY" "$HERE/segment_window.py" "$W/proj" "$W/pts.json" > "$W/app.log" 2>&1 & APP=$!
for i in $(seq 100); do [ -s "$W/pts.json" ] && break; sleep 0.3; done
P() { "$PY" -c "import json;p=json.load(open('$W/pts.json'))['$1'];print(p[0],p[1])"; }
shot() { "$PY" -c "
import sys
from PySide6.QtGui import QGuiApplication
a=QGuiApplication(sys.argv[:1]); a.primaryScreen().grabWindow(0).save('$W/$1.png')"; }
files() { echo "--- $1"; cat "$W/proj/labels/img_0.txt" 2>/dev/null; echo "proposals: $(ls "$W/proj/proposals" 2>/dev/null)"; }
anchors() { sleep 0.3; echo "--- $1"; cat "$W/anchors.txt"; echo; }
mv_to() { xdotool mousemove $(P "$1"); sleep 0.3; }
click() { mv_to "$1"; xdotool click 1; sleep 0.5; }
key() { xdotool key "$1"; sleep 0.5; }
WID=$(xdotool search --sync --onlyvisible --name "dfine-studio" | head -1); xdotool windowactivate --sync "$WID" 2>/dev/null; sleep 0.5
# 1) focus the canvas (a click in the select tool), then scissors: two corners, a stray point, Ctrl+Z (the stray goes), the third corner, preview, close
click stray; key i; click a; click b; click stray; anchors "three_anchors"; key ctrl+z; anchors "after_undo"
click c; xdotool mousemove $(P a | awk '{print $1+25, $2+10}'); sleep 0.5; shot 1_scissors_preview
click a; key ctrl+s; sleep 0.5; shot 2_scissors_closed; files "scissors_closed"
# 2) SAM: one click in the square -> a proposal (kept apart from the labels until accepted)
key s; sleep 1.5; click sam; sleep 1.0; key ctrl+s; sleep 0.5; shot 3_sam_proposal; files "sam_proposal"
echo "--- status"; grep -v "^$" "$W/status.log" 2>/dev/null | tail -20
