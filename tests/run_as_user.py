"""``python tests/run_as_user.py UID GID GROUPS UMASK MODULE [ARGS...]``: run ``python -m MODULE ARGS`` as another
user (root only), for tests of files shared between users.

The interpreter is started as root and drops its privileges once the modules are imported, since a second user may
not be able to reach the interpreter itself (a pyenv Python under root's 0700 home). GROUPS is a comma-separated list
of supplementary group ids (may be empty); UMASK is octal.
"""

from __future__ import annotations

import os
import runpy
import sys
import warnings

# Everything the entry points import lazily, while this process may still read it.
import concurrent.futures.process  # noqa: F401
import multiprocessing.popen_fork  # noqa: F401
import multiprocessing.synchronize  # noqa: F401

import seq2seq_lit.prepare  # noqa: F401
import seq2seq_lit.train  # noqa: F401


def main() -> None:
    uid, gid, groups, umask, module, *args = sys.argv[1:]
    os.setgroups([int(g) for g in groups.split(",") if g])
    os.setgid(int(gid))
    os.setuid(int(uid))
    os.umask(int(umask, 8))
    sys.argv = [module, *args]
    warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)  # imported above
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
