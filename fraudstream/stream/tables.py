"""Faust tables seen as plain mappings of bytes, for the pure core.

The core batches its writes; a batch mixes partitions, so each write names
its changelog partition explicitly instead of relying on faust's "current
event".
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

__all__ = ["TableMapping"]


class TableMapping(MutableMapping[str, bytes]):
    """``str`` keys, ``bytes`` values, changelogged to the partition of the key's events."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.partition = 0  # partition of the event being processed
        self.partition_of: dict[str, int] = {}  # keys written later in the batch

    def route(self, key: str, partition: int) -> None:
        self.partition_of[key] = partition

    def __getitem__(self, key: str) -> bytes:
        value = self.table.data.get(key.encode())
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self.table.data.get(key.encode())
        return default if value is None else value

    def __setitem__(self, key: str, value: bytes) -> None:
        k = key.encode()
        self.table.data[k] = value
        self.table.send_changelog(self.partition_of.get(key, self.partition), k, value)

    def __delitem__(self, key: str) -> None:
        k = key.encode()
        if self.table.data.get(k) is None:
            raise KeyError(key)
        del self.table.data[k]
        self.table.send_changelog(self.partition_of.get(key, self.partition), k, None)

    def pop(self, key: str, default: Any = None) -> Any:
        value = self.get(key)
        if value is None:
            return default
        del self[key]
        return value

    def __iter__(self) -> Iterator[str]:
        for k in list(self.table.data.keys()):
            yield k.decode() if isinstance(k, bytes) else k

    def __len__(self) -> int:
        return len(self.table.data)

    def clear_routes(self) -> None:
        self.partition_of.clear()
