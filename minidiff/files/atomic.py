"""Atomic writes: a reader sees the old file or the new one, never half of one, even if the writer is killed.

Every file minidiff writes (checkpoints, training states, images, JSON, cached latents) goes through here: the bytes go
to a temporary file in the same folder, are flushed to disk, and the temporary file then replaces the target in one
step (`os.replace`, atomic on POSIX and Windows).
"""

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` so a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp_name, 0o644)  # mkstemp makes files only their owner can read
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
