"""Free heap goes back to the operating system."""

from __future__ import annotations

import ctypes
import platform

import pytest

from fraudstream.stream.heap import release_free_heap


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_memory_freed_between_live_chunks_is_given_back() -> None:
    # 200 MiB in 4 KiB blocks (malloc's, not the interpreter's small-object arenas); one in 16 stays alive, so the
    # freed ones sit between live ones and the allocator keeps them all.
    blocks = [ctypes.create_string_buffer(4096) for _ in range(51_200)]
    for b in blocks:
        b.raw = b"x" * 4096  # touched: resident
    kept = blocks[::16]
    del blocks
    before = rss_kib()
    assert release_free_heap() is True
    after = rss_kib()
    assert before - after > 100 * 1024, (before, after)
    assert all(k.raw[:1] == b"x" for k in kept)  # what is still in use is untouched
