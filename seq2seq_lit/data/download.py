"""Downloading a gzipped file into a cache, checked against the sha256 of its decompressed bytes."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from seq2seq_lit.data._files import atomic_write_bytes, sha256_file
from seq2seq_lit.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0


def fetch_gzip(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    hint: str = "",
) -> Path:
    """Download the gzip file at ``url``, decompress it and write it to ``dest``, unless ``dest`` already holds it.

    ``dest`` is kept when the sha256 of its bytes is ``sha256``; otherwise it is downloaded again. The decompressed
    bytes are checked before anything is written, and written atomically, so ``dest`` is never partial or wrong.

    Args:
        url: where the ``.gz`` file is.
        dest: path of the decompressed file.
        sha256: expected hex sha256 of the decompressed bytes.
        timeout: seconds to wait for the server (per blocking socket operation).
        hint: a sentence appended to network error messages (e.g. how to use local files instead).

    Returns:
        ``dest`` as a Path.

    Raises:
        DataError: the download failed, the payload is not gzip, its checksum differs, or ``dest`` cannot be written.
    """
    dest = Path(dest)
    expected = sha256.lower()
    if dest.is_file():
        actual = sha256_file(dest)
        if actual == expected:
            log.debug("%s is cached and its checksum matches", dest)
            return dest
        log.warning("%s has sha256 %s, expected %s: downloading it again", dest, actual, expected)

    log.info("downloading %s -> %s", url, dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as e:
        message = f"download of {url} failed: HTTP {e.code} {e.reason}. Fix: check the base URL. {hint}"
        raise DataError(message.rstrip()) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DataError(
            f"download of {url} failed: {reason}. Fix: check the network connection and proxy settings (timeout "
            f"{timeout:g} s). {hint}".rstrip()
        ) from None
    try:
        data = gzip.decompress(payload)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{url} is not a valid gzip file ({e}; {len(payload)} bytes received). Fix: retry (the download may be "
            f"truncated) and check the base URL. {hint}".rstrip()
        ) from None

    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise DataError(
            f"checksum mismatch for {url}: expected sha256 {expected}, got {actual} (of the decompressed bytes); "
            f"nothing was written to {dest}. Fix: retry (the download may be corrupt or altered by a proxy); if the "
            f"file changed upstream on purpose, pass its new digest in the corpus' sha256 setting."
        )
    try:
        atomic_write_bytes(dest, data)
    except OSError as e:
        raise DataError(
            f"cannot write {dest} ({e.strerror}). Fix: make {dest.parent} writable or choose another cache_dir."
        ) from None
    log.info("wrote %s (%d bytes, sha256 ok)", dest, len(data))
    return dest
