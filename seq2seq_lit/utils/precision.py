"""Mixed precision on CPUs that advertise Intel AMX but fault on it.

Under ``trainer.precision=bf16-mixed`` on a CPU, autocast runs matrix products (linear layers, the LSTM/GRU cells)
in bfloat16 through oneDNN, which picks its fastest kernels for the CPU it detects: on a CPU whose ``cpuid`` lists
AMX (``amx_tile``, ``amx_bf16``; Sapphire Rapids and later), the AMX ``brg_matmul`` kernels. Some virtual machines
report AMX and let the kernel enable its register state, yet the first AMX instruction stops the process with
SIGILL ("Illegal instruction", exit status 132; seen on this project's Firecracker VMs with torch 2.13 / oneDNN 3.12,
for a plain ``nn.Linear`` as well as an LSTM under ``torch.autocast("cpu", torch.bfloat16)``; float32 is not affected).

:func:`avoid_unusable_amx` checks this once, in a child process (a crash there costs nothing), and when AMX
bfloat16 kernels crash it caps oneDNN at the AVX-512 (FP16/BF16) kernels with ``ONEDNN_MAX_CPU_ISA``, which still
compute in bfloat16. oneDNN fixes its ISA the first time PyTorch uses it, for float32 work too (a float32 LSTM step
before the cap is enough for the crash to come back), so the cap must be set before the process' first oneDNN
operation: ``train`` does it first thing. Code that calls ``train`` after other PyTorch work in the same process
(a notebook) should set ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_FP16`` before starting Python instead; one set by the user
is left alone.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)

ISA_WITHOUT_AMX = "AVX512_CORE_FP16"
"""The highest oneDNN ISA below AMX (AVX-512 with FP16 and BF16 instructions)."""

_PROBE = (
    "import torch\n"
    "with torch.autocast('cpu', dtype=torch.bfloat16):\n"
    "    torch.nn.Linear(64, 64)(torch.randn(32, 64))\n"
)


def cpu_advertises_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU flags list AMX tiles (Linux; False where ``/proc/cpuinfo`` cannot be read)."""
    try:
        return "amx_tile" in cpuinfo.read_text().split()
    except OSError:
        return False


def amx_bf16_works(timeout: float = 120.0) -> bool:
    """Whether a bfloat16 autocast matrix product runs in a fresh Python process with the current environment."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        result = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def avoid_unusable_amx(precision: str | int | None, accelerator: str | None) -> bool:
    """For CPU bfloat16 training on a CPU that advertises AMX, cap oneDNN below AMX if AMX kernels crash here.

    Call before the process' first oneDNN operation, float32 ones included (``train`` does, first thing). Returns
    whether the cap was set. Nothing is checked for float32 or 16-mixed precision, for GPU runs, or when ``ONEDNN_MAX_CPU_ISA`` is set.
    """
    if not str(precision).startswith("bf16") or "ONEDNN_MAX_CPU_ISA" in os.environ:
        return False
    if accelerator not in (None, "cpu", "auto"):
        return False
    if accelerator == "auto":
        import torch

        if torch.cuda.is_available():
            return False
    if not cpu_advertises_amx() or amx_bf16_works():
        return False
    os.environ["ONEDNN_MAX_CPU_ISA"] = ISA_WITHOUT_AMX
    log.warning(
        "This CPU lists AMX but bfloat16 AMX kernels crash here (Illegal instruction); oneDNN is capped at %s "
        "(ONEDNN_MAX_CPU_ISA) for this run. Set ONEDNN_MAX_CPU_ISA yourself to skip this check.",
        ISA_WITHOUT_AMX,
    )
    return True


def unfuse_optimizer_for_clipping(cfg: DictConfig) -> bool:
    """Turn off ``model.optimizer.fused`` for mixed precision with gradient clipping, and say so; returns whether it
    did.

    Lightning's mixed-precision plugins refuse to clip the gradients of an optimizer that unscales them itself
    (``RuntimeError: The current optimizer, Adam, does not allow for gradient clipping ...``), which a fused Adam
    claims to do; the default config has both ``fused: true`` and ``gradient_clip_val: 5.0``. The unfused optimizer
    computes the same update (and keeps the same state, so checkpoints resume either way).
    """
    precision = str(cfg.trainer.get("precision"))
    optimizer = cfg.get("model", {}).get("optimizer") or {}
    if "mixed" not in precision or not cfg.trainer.get("gradient_clip_val") or not optimizer.get("fused"):
        return False
    with open_dict(cfg):
        cfg.model.optimizer.fused = False
    log.info("trainer.precision=%s with gradient clipping: model.optimizer.fused set to false (Lightning cannot clip "
             "the gradients of a fused optimizer under mixed precision)", precision)
    return True
