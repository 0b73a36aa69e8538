"""Run a peer toolkit's reference script (``../shared/peers/run_onmt.sh`` or ``run_joey.sh``) and read its figures.

The peers' folder (``--peers-dir`` of ``bench/train_decode.py``, default ``../shared/peers`` next to the repository)
holds scripts that train the reference model with OpenNMT-py 3.5.1 or JoeyNMT 2.3.0 for ``STEPS`` steps on the same
data and batch, then translate test_2016_flickr greedily and with beam 5; ``setup.sh`` there installs the toolkits in
their own virtual environments under ``/tmp/peers`` (once per machine). The figures are those the scripts print:
steady-state s/step and source+target tokens/s (OpenNMT-py's own count; JoeyNMT's estimated from sentences/s by its
parser), training peak RSS, decoding sentences/s and BLEU.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

PEERS = {"onmt": ("OpenNMT-py 3.5.1", "run_onmt.sh"), "joey": ("JoeyNMT 2.3.0", "run_joey.sh")}
VENVS = Path("/tmp/peers")


class PeerError(RuntimeError):
    """A peer could not be run or its output not read; the message says why and what to do."""


def _number(pattern: str, text: str, what: str, name: str) -> float:
    match = re.search(pattern, text)
    if match is None:
        raise PeerError(f"{name}: no {what} in the script's output (pattern {pattern!r}); see the output above")
    return float(match.group(1))


def parse_output(name: str, text: str) -> dict[str, Any]:
    """The figures in the printed output of ``run_<name>.sh``.

    Raises:
        PeerError: if a figure is missing (the script failed or its format changed).
    """
    train, *decodings = text.split("== translate beam=")  # training, then greedy (beam=1) and beam 5
    tokens = r"est_src\+tgt_tok/s=(\d+)" if name == "joey" else r"src\+tgt tok/s=(\d+)"
    figures: dict[str, Any] = {
        "toolkit": PEERS[name][0],
        "s_per_step": _number(r"s/step=([\d.]+)", train, "s/step", name),
        "tokens_per_s": _number(tokens, train, "source+target tokens/s", name),
        "peak_rss_mib": _number(r"peak_rss_MiB=(\d+)", train, "training peak RSS", name),
    }
    for beam, section in zip(("greedy", "beam5"), decodings + ["", ""]):
        figures[beam] = {
            "sentences_per_s": _number(r"sents/s=([\d.]+)", section, f"{beam} sentences/s", name),
            "bleu": _number(r"BLEU ([\d.]+)", section, f"{beam} BLEU", name),
        }
    return figures


def run_peer(name: str, peers_dir: Path, steps: int, data_dir: Path | None = None) -> dict[str, Any]:
    """Run ``run_<name>.sh`` with ``STEPS=steps`` (its output streams to this terminal) and return its figures.

    Raises:
        PeerError: unknown peer, missing scripts or environments (with the command that installs them), a failed
            run, or output without the expected figures.
    """
    if name not in PEERS:
        raise PeerError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    script = peers_dir / PEERS[name][1]
    if not script.is_file():
        raise PeerError(f"{script} not found; fix: pass --peers-dir pointing at the folder with run_onmt.sh / run_joey.sh")
    if not (VENVS / name / "venv" / "bin" / "python").exists():
        raise PeerError(f"{PEERS[name][0]} is not installed under {VENVS / name}; fix: bash {peers_dir / 'setup.sh'}")
    env = {**os.environ, "STEPS": str(steps)}
    if data_dir is not None:
        env["DATA"] = str(data_dir)
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    print(done.stdout, end="", flush=True)
    if done.returncode:
        raise PeerError(f"{script} exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    return {"steps": steps, **parse_output(name, done.stdout)}
