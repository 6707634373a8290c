"""The demo file format's keys and the checks a file passes before and after it is inflated
(declared sizes against free memory, layout, contiguous episodes, finite values)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from sqil_lightning.demos.errors import DemoFormatError

FORMAT_VERSION = 1
ARRAY_KEYS = (
    "observations",
    "actions",
    "next_observations",
    "rewards",
    "terminated",
    "truncated",
    "episode_ids",
)


def declared_arrays(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The shape and dtype of every array in the .npz at ``path``, read from the array headers alone.

    Each entry's uncompressed size, as the zip directory declares it, must be exactly its header
    plus the bytes its shape and dtype need: anything else is a corrupt or crafted file.
    Raises `DemoFormatError`; zip and header errors propagate as `zipfile.BadZipFile`/`ValueError`.
    """
    declared = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            key = info.filename.removesuffix(".npy")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(member)
                header_bytes = member.tell()
            if dtype.hasobject:
                raise ValueError(f"{key} holds Python objects")  # refused like numpy's allow_pickle=False
            needed = header_bytes + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if info.file_size != needed:
                raise DemoFormatError(
                    f"demo file {path}: entry '{info.filename}' declares {info.file_size} bytes but its header "
                    f"(shape {shape}, dtype {dtype}) needs {needed}; the file is corrupt or was crafted"
                )
            declared[key] = (tuple(shape), dtype)
    missing = [k for k in (*ARRAY_KEYS, "metadata") if k not in declared]
    if missing:
        raise DemoFormatError(
            f"demo file {path} lacks the key(s) {missing}; a demo file holds {list(ARRAY_KEYS)} and 'metadata'"
        )
    return declared


def check_layout(source: str, declared: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """Row counts, shapes and dtypes of the demo arrays (from their headers or the arrays themselves)."""
    obs_shape, obs_dtype = declared["observations"]
    n = obs_shape[0] if obs_shape else -1
    for key in ARRAY_KEYS:
        shape = declared[key][0]
        if not shape or shape[0] != n:
            raise DemoFormatError(f"demo file {source}: key '{key}' has shape {shape}, expected {n} rows like 'observations'")
    if n == 0:
        raise DemoFormatError(f"demo file {source} holds no transitions")
    next_shape = declared["next_observations"][0]
    if next_shape != obs_shape:
        raise DemoFormatError(
            f"demo file {source}: 'next_observations' shape {next_shape} differs from 'observations' shape {obs_shape}"
        )
    for key in ("terminated", "truncated"):
        if declared[key][1] != np.bool_:
            raise DemoFormatError(f"demo file {source}: key '{key}' must be bool, got {declared[key][1]}")
    for key in ("observations", "next_observations"):
        dtype = declared[key][1]
        if not (np.issubdtype(dtype, np.floating) or dtype == np.uint8):
            raise DemoFormatError(f"demo file {source}: '{key}' must be floating point or uint8 (images), got {dtype}")


def check_fits_in_memory(path: Path, declared: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """Refuse a file whose arrays, once inflated, need more memory than the machine has free."""
    needed = sum(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize for shape, dtype in declared.values())
    available = available_memory()
    if available is not None and needed > available:
        raise DemoFormatError(
            f"demo file {path} inflates to {needed / 2**30:.1f} GiB but only {available / 2**30:.1f} GiB of memory "
            "is available; use fewer demo episodes or a machine with more memory"
        )


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_episodes(source: str, episode_ids: np.ndarray, done: np.ndarray) -> None:
    """Each episode's rows are contiguous and its last row is terminated or truncated."""
    starts = np.r_[0, np.flatnonzero(np.diff(episode_ids) != 0) + 1]
    _, first_block = np.unique(episode_ids[starts], return_index=True)
    if first_block.size != starts.size:
        repeat = int(np.setdiff1d(np.arange(starts.size), first_block)[0])  # the first block of an id seen before
        row = int(starts[repeat])
        raise DemoFormatError(
            f"demo file {source}: the rows of episode {int(episode_ids[row])} are not contiguous (it starts again at "
            f"row {row}); each episode's rows must follow one another in 'episode_ids'"
        )
    if not done[-1] or not done[starts[1:] - 1].all():
        raise DemoFormatError(
            f"demo file {source}: every episode must end with a terminated or truncated row "
            "(check 'episode_ids', 'terminated' and 'truncated')"
        )


def check_finite(source: str, key: str, values: np.ndarray, episode_ids: np.ndarray) -> None:
    """Refuse NaN or infinite values, naming the first bad row (else the loss diverges when it is drawn)."""
    if not np.issubdtype(values.dtype, np.floating):
        return  # integers (discrete actions, uint8 frames) cannot hold NaN or inf
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise DemoFormatError(
            f"demo file {source}: key '{key}' holds NaN or inf at row {row} (episode {int(episode_ids[row])}); "
            "demo values must be finite: re-record the demos or drop that episode"
        )
