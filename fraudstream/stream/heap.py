"""The C allocator's memory: giving freed memory back, and telling memory in use from memory merely held.

A worker's memory churns: live states are trimmed and loaded again, idle ones evicted, fetched batches decoded and
dropped, RocksDB's memtables filled and flushed. glibc's allocator keeps what is freed between chunks still in use,
so resident memory stays at its high-water mark and looks like a leak. In a soak at 50 authorizations/s, 106 MiB of
a worker's 686 MiB was such free memory (``mallinfo2().fordblks``), and ``malloc_trim`` gave it back.

Resident memory that grows while the allocator's memory in use does not is the allocator's, not a leak:
:func:`allocator_usage` tells the two apart, for glibc and for jemalloc (when the worker runs under it).

>>> isinstance(release_free_heap(), bool)
True
>>> usage = allocator_usage()
>>> usage is None or usage.in_use > 0
True
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

__all__ = ["AllocatorUsage", "allocator_usage", "release_free_heap"]


def _libc_function(name: str) -> Any:
    try:
        return getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None


_TRIM = _libc_function("malloc_trim")  # glibc; musl and macOS have none, and need none
_MALLCTL = _libc_function("mallctl")  # jemalloc, when preloaded: it then serves every malloc


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


_MALLINFO2 = _libc_function("mallinfo2")  # glibc 2.33 and later
if _MALLINFO2 is not None:
    _MALLINFO2.restype = _Mallinfo2


@dataclass(frozen=True)
class AllocatorUsage:
    """Bytes of the C allocator: ``in_use`` by the program (RocksDB, librdkafka, the interpreter's objects over 512
    bytes; not its small-object arenas), and ``free``: held by the allocator, not in use. For glibc, ``free`` counts
    free chunks, some of whose pages ``malloc_trim`` has already returned; for jemalloc, resident pages not in use."""

    allocator: str
    in_use: int
    free: int


def _jemalloc_stat(name: str) -> int:
    value = ctypes.c_size_t(0)
    size = ctypes.c_size_t(ctypes.sizeof(value))
    if _MALLCTL(name.encode(), ctypes.byref(value), ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
        raise OSError(f"mallctl {name} failed")
    return value.value


def allocator_usage() -> AllocatorUsage | None:
    """What the C allocator holds now, or None where it cannot tell (neither glibc 2.33+ nor jemalloc).

    It walks the allocator's free lists under its locks (about a millisecond on a worker): call it from a timer."""
    if _MALLCTL is not None:
        epoch = ctypes.c_uint64(1)  # jemalloc's statistics are a snapshot, refreshed by writing its epoch
        _MALLCTL(b"epoch", None, None, ctypes.byref(epoch), ctypes.c_size_t(ctypes.sizeof(epoch)))
        try:
            allocated, resident = _jemalloc_stat("stats.allocated"), _jemalloc_stat("stats.resident")
        except OSError:
            return None  # built without statistics
        return AllocatorUsage("jemalloc", allocated, max(0, resident - allocated))
    if _MALLINFO2 is not None:
        info = _MALLINFO2()
        return AllocatorUsage("glibc", info.uordblks + info.hblkhd, info.fordblks)
    return None


def release_free_heap() -> bool:
    """Return the allocator's free pages to the system. False where the C library cannot (not glibc).

    It takes a few milliseconds on a worker's heap and holds the allocator's locks meanwhile: call it from a timer,
    not per message."""
    if _TRIM is None or _MALLCTL is not None:
        return False  # under jemalloc, glibc's malloc_trim would trim arenas nobody uses
    _TRIM(ctypes.c_size_t(0))
    return True
