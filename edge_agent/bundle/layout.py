"""Where a bundle's parts live on disk: the file names of the format, its error type, hashing.

```
<models_dir>/<name>/<version>/   manifest.json, manifest.sig?, model.onnx, model.fp32.onnx?,
                                 tokenizer.json
<models_dir>/<name>/current      optional symlink to a version folder (an operator's pin)
<models_dir>/<name>/.<anything>  staging (installs in progress); never read
```

Every module that needs one of these names imports it from here, so the format is written
down once (docs/bundle-format.md).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

FORMAT_VERSION: Final = 1
MANIFEST_FILE: Final = "manifest.json"
SIGNATURE_FILE: Final = "manifest.sig"
MODEL_FILE: Final = "model.onnx"
FP32_MODEL_FILE: Final = "model.fp32.onnx"
TOKENIZER_FILE: Final = "tokenizer.json"
CURRENT_LINK: Final = "current"
# The only files a bundle may hold. A fixed list rather than a path check: a name that is
# not here cannot be a path, so it cannot escape the bundle folder (OTA relies on this).
BUNDLE_FILES: Final = frozenset(
    {MANIFEST_FILE, SIGNATURE_FILE, MODEL_FILE, FP32_MODEL_FILE, TOKENIZER_FILE}
)
REQUIRED_FILES: Final = frozenset({MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE})
ONNX_FILES: Final = frozenset({MODEL_FILE, FP32_MODEL_FILE})
# manifest.json and manifest.sig are read whole, before anything else is checked: small.
# Real manifests are a few kB (golden examples included); a signed 1 GiB one must not be
# read into memory on every start.
MAX_MANIFEST_BYTES: Final = 1 << 20
MAX_SIGNATURE_BYTES: Final = 1 << 10
_HASH_CHUNK: Final = 1 << 20


class BundleError(Exception):
    """A bundle cannot be used; the message names the file and the problem, because the
    person reading it is usually looking at a device log with no other context."""


def read_small(path: Path, limit: int, unreadable: str) -> bytes:
    """A file read whole, but never more than `limit` bytes of it (the format's limits on
    manifest.json and manifest.sig): BundleError naming the file otherwise."""
    try:
        with path.open("rb") as stream:
            data = stream.read(limit + 1)
    except OSError as error:
        raise BundleError(f"{path}: {unreadable}: {error.strerror or error}") from error
    if len(data) > limit:
        raise BundleError(f"{path}: larger than {limit} bytes")
    return data


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
