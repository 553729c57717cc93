#!/usr/bin/env bash
# How weights/toy64.safetensors is made (a CPU is enough; a GPU much faster). Run from the repository root.
# One training run with the toy64 preset (its lr ramps down over the run's last 120k samples), then the
# attribute directions. Re-running resumes the run where it stopped; arguments go to `automod train`
# (e.g. `--threads 1` on a busy machine, `--device cuda`).
set -euo pipefail
DATA=${DATA:-/tmp/toyfaces64}
RUN=${RUN:-runs/toy64}
A=".venv/bin/automod"

[ -f "$DATA/labels.csv" ] || $A data toyfaces -o "$DATA" --n 20000 --size 64 --seed 0
$A train "$DATA" --out "$RUN" --preset toy64 --seed 0 "$@"

# Attribute directions from the labels: 500 training faces with and 500 without each attribute.
.venv/bin/python - "$DATA" "$RUN/attr" <<'PY'
import csv, os, sys
data, out = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(os.path.join(data, "labels.csv"))))
for attr in ("smile", "glasses"):
    col = f"middle_{attr}"
    for flag, name in (("1", "with"), ("0", "without")):
        d = os.path.join(out, attr, name)
        os.makedirs(d, exist_ok=True)
        for r in [r for r in rows if r[col] == flag][:500]:
            dst = os.path.join(d, r["file"])
            if not os.path.exists(dst):
                os.symlink(os.path.abspath(os.path.join(data, r["file"])), dst)
PY
# The directions go into a copy of the run's model outside weights/ (automod never rewrites a shipped
# file), which then replaces the bundled one.
cp "$RUN/model.safetensors" "$RUN/bundle.safetensors"
for attr in smile glasses; do
  $A attr add "$attr" --with "$RUN/attr/$attr/with" --without "$RUN/attr/$attr/without" --scales middle \
     -m "$RUN/bundle.safetensors" --overwrite
done
mv "$RUN/bundle.safetensors" weights/toy64.safetensors
$A info weights/toy64.safetensors
