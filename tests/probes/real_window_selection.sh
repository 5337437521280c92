#!/usr/bin/env bash
# Person-style check of #32 with real X events (xdotool) on the real window under Xvfb.
# Usage: real_window_selection.sh WORKDIR PYTHON. Prints each step's label file; screenshots in WORKDIR.
set -u
W=$1; PY=$2; HERE=$(cd "$(dirname "$0")" && pwd); cd "$HERE/../.."; export PYTHONPATH=$PWD
rm -rf "$W/proj" "$W/pts.json" "$W/status.log"; mkdir -p "$W"; "$PY" "$HERE/selection_project.py" "$W/proj"
N=$(for n in $(seq 91 140); do [ -e /tmp/.X11-unix/X$n ] || [ -e /tmp/.X$n-lock ] || { echo $n; break; }; done)
Xvfb ":$N" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 & XV=$!
trap 'kill $APP $XV 2>/dev/null' EXIT
for i in $(seq 50); do [ -e /tmp/.X11-unix/X$N ] && break; sleep 0.1; done
export DISPLAY=":$N" QT_QPA_PLATFORM=xcb
"$PY" "$HERE/selection_window.py" "$W/proj" "$W/pts.json" > "$W/app.log" 2>&1 & APP=$!
for i in $(seq 100); do [ -s "$W/pts.json" ] && break; sleep 0.3; done
P() { "$PY" -c "import json;p=json.load(open('$W/pts.json'))['$1'];print(p[0],p[1])"; }
shot() { "$PY" -c "
import sys
from PySide6.QtGui import QGuiApplication
a=QGuiApplication(sys.argv[:1]); a.primaryScreen().grabWindow(0).save('$W/$1.png')"; }
labels() { echo "--- $1"; cat "$W/proj/labels/img_0.txt"; echo "proposals: $(ls "$W/proj/proposals" 2>/dev/null)"; }
mv_to() { xdotool mousemove $(P "$1"); sleep 0.3; }
click() { mv_to "$1"; xdotool click 1; sleep 0.4; }
key() { xdotool key "$1"; sleep 0.5; }
save() { key ctrl+s; }
WID=$(xdotool search --sync --onlyvisible --name "dfine-studio" | head -1); xdotool windowactivate --sync "$WID" 2>/dev/null; sleep 0.5
shot 0_open; labels "open"
# 1) box selected, pointer on the unselected triangle's tip, Delete -> the box goes, triangle intact
click box_in; mv_to tri_tip; key Delete; save; shot 1_del_selected_box; labels "del_selection_not_hovered_vertex"
key ctrl+z; save
# 2) nothing selected, pointer on a vertex, Delete -> nothing
click empty; mv_to tri_tip; key Delete; save; labels "del_nothing_selected"
# 3) select triangle, H (hidden + deselected), Delete -> nothing; H again shows it
click tri_in; key h; shot 3_hidden; key Delete; save; labels "hide_then_del"; key h; shot 3b_shown_again
# 4) box corner: select box, pointer on its corner, Delete -> box deleted
click box_in; mv_to box_corner; key Delete; save; labels "del_on_box_corner"; key ctrl+z; save
# 5) lock triangle: Ctrl+L, click it (no selection), 3 (no relabel), Delete (nothing)
click tri_in; key ctrl+l; click tri_in; key 3; key Delete; save; shot 5_locked; labels "locked"
key Escape; key ctrl+l
# 6) accept the proposal: click it, Ctrl+Return -> it is in labels, proposals gone
click prop_in; key ctrl+Return; save; shot 6_accepted; labels "accepted"
echo "--- status"; grep -v "^$" "$W/status.log" 2>/dev/null | tail -20
