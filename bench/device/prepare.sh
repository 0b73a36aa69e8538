#!/usr/bin/env bash
# Prepare a GPU check on the lent GPU machine, which has no network and cannot install anything (docs/performance.md).
# Run here, from anywhere in the checkout, after `make install`:
#
#   SEQ2SEQ_DATA_DIR=../shared/data bash bench/device/prepare.sh
#
# 1. downloads into .whl/ the wheels that machine's image lacks (bench/device/wheels.txt: each at the version
#    installed in .venv, for CPython 3.12 on manylinux x86-64, one version each; a package with no wheel on PyPI, as
#    antlr4-python3-runtime 4.9.3, is built here into a pure-Python wheel), and checks that every need of those wheels
#    is on the machine (bench/device/machine_packages.txt) or among them;
# 2. copies Multi30k from $SEQ2SEQ_DATA_DIR/multi30k into .device_data/multi30k;
# 3. prints the folders to carry and the size of what travels (the working tree and the carried folders: < 64 MiB).
# Both folders are ignored by git. Then, on the GPU machine: bash bench/device/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PYTHON="${PYTHON:-.venv/bin/python}"
WHEELS=.whl
DATA=.device_data
LIMIT_MIB=64
if [[ ! -x "$PYTHON" ]]; then
    echo "prepare: $PYTHON not found. Fix: run make install first (or set PYTHON=/path/to/python)" >&2
    exit 2
fi
if [[ -z "${SEQ2SEQ_DATA_DIR:-}" || ! -f "${SEQ2SEQ_DATA_DIR}/multi30k/train.de" ]]; then
    echo "prepare: no Multi30k at \$SEQ2SEQ_DATA_DIR/multi30k (SEQ2SEQ_DATA_DIR='${SEQ2SEQ_DATA_DIR:-}'). Fix: SEQ2SEQ_DATA_DIR=<folder with multi30k/> bash bench/device/prepare.sh" >&2
    exit 2
fi

mapfile -t packages < <(grep -v '^\s*#' bench/device/wheels.txt | grep -v '^\s*$')
specs=()
for name in "${packages[@]}"; do
    version=$("$PYTHON" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name") || {
        echo "prepare: $name is not installed in $PYTHON. Fix: make install" >&2; exit 2; }
    specs+=("$name==$version")
done
rm -rf "$WHEELS"
mkdir -p "$WHEELS"
binary=() built=()
for spec in "${specs[@]}"; do
    if "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --abi cp312 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        -d "$WHEELS" "$spec" 2>/dev/null; then
        binary+=("$spec")
    else  # an sdist only: build it here (pure Python, so the wheel is py3-none-any and runs there)
        "$PYTHON" -m pip wheel --quiet --no-deps -w "$WHEELS" "$spec"
        built+=("$spec")
    fi
done
echo "prepare: wheels downloaded: ${binary[*]:-none}; built here from source: ${built[*]:-none}"
"$PYTHON" - "$WHEELS" <<'PY'
"""Every wheel is one package at one version, runs on CPython 3.12 x86-64 Linux, and its needs are all present."""
import re
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

THERE = {"python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
         "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
         "os_name": "posix", "platform_machine": "x86_64", "extra": ""}  # the GPU machine's environment markers

def norm(name): return re.sub(r"[-_.]+", "-", name).lower()

folder = Path(sys.argv[1])
carried = {norm(w.name.split("-")[0]): w for w in folder.glob("*.whl")}
if len(carried) != len(list(folder.glob("*.whl"))):
    sys.exit(f"prepare: two versions of one package in {folder}: the install there would stop. Fix: rerun prepare.sh")
machine = {norm(n) for line in Path("bench/device/machine_packages.txt").read_text().splitlines()
           if not line.startswith("#") for n in line.split()}
missing = []
for name, wheel in sorted(carried.items()):
    tags = wheel.stem.split("-")[-3:]
    if not (tags[0] in ("py3", "cp312") or tags[0].startswith("py3")) or not re.match(r"(any|manylinux.*x86_64)", tags[2]):
        sys.exit(f"prepare: {wheel.name} does not run on CPython 3.12 x86-64 Linux")
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    for line in meta.splitlines():
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker and not req.marker.evaluate(THERE):
                continue  # a need of other Pythons or of an extra
            need = norm(req.name)
            if need not in carried and need not in machine:
                missing.append(f"{need} (needed by {wheel.name})")
if missing:
    sys.exit("prepare: needs neither on the GPU machine nor carried: " + ", ".join(missing)
             + ". Fix: add them to bench/device/wheels.txt")
print(f"prepare: {len(carried)} wheels, every need on the machine or carried")
PY

rm -rf "$DATA"
mkdir -p "$DATA/multi30k"
for split in train val test_2016_flickr; do
    cp "$SEQ2SEQ_DATA_DIR/multi30k/$split".{de,en} "$DATA/multi30k/"
done
echo "prepare: Multi30k copied to $DATA/multi30k"

# What travels: tracked and untracked-not-ignored files, plus the carried folders.
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | "$PYTHON" -c \
    "import os, sys; print(sum(os.path.getsize(p) for p in sys.stdin.read().split('\0') if p and os.path.isfile(p)))")
carried_bytes=$(du -sb "$WHEELS" "$DATA" | awk '{s += $1} END {print s}')
total_mib=$(( (tree_bytes + carried_bytes + 1048575) / 1048576 ))
echo "prepare: carry [\"$WHEELS\", \"$DATA\"]"
echo "prepare: travels $total_mib MiB (working tree $(( tree_bytes / 1048576 )) MiB, carried $(( carried_bytes / 1048576 )) MiB; limit $LIMIT_MIB MiB)"
if (( total_mib >= LIMIT_MIB )); then
    echo "prepare: over the $LIMIT_MIB MiB that may travel. Fix: remove large untracked files from the checkout" >&2
    exit 1
fi
echo "prepare: on the GPU machine run: bash bench/device/run.sh   (carry: $WHEELS $DATA)"
