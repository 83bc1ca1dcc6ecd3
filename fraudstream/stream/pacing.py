"""How long an agent waits for its next batch: longer while traffic is slow, so that each batch (and each produce
batch it writes, one per topic-partition it touches) holds more.

A worker's batch closes ``FRAUDSTREAM_BATCH_WINDOW_S`` (20 ms) after the previous one, or sooner when it is full. At
200 authorizations a second that is 4 authorizations a batch, over 3 partitions: each hop then writes about one
produce batch per record, and the embedded broker's fetch costs CPU in proportion to the record batches a partition
holds (it keeps them all: no retention), so a steady 200/s brought it to a full core within minutes (docs/capacity.md,
The soak at 200/s). :class:`BatchPacing` estimates the rate an agent's batches arrive at, and spaces its batches
``FRAUDSTREAM_BATCH_FILL / rate`` seconds apart, between the window and ``FRAUDSTREAM_BATCH_WINDOW_MAX_S``: at 200/s
batches of 50, 250 ms apart; from 2,500/s on, the window alone. The price is latency: up to the longest window per
hop, at low rates only.

The agent keeps its batch window; it only pauses after a batch it finished (:func:`fraudstream.stream.delivery
.batches`), and what arrives meanwhile waits in faust's stream buffer for the next batch.

>>> pacing = BatchPacing(window_s=0.02, fill=50, longest_s=0.25)
>>> pacing.pause_after(4, taken_at=10.0, now=10.01)  # the first batch: no rate known yet
0.0
>>> round(pacing.pause_after(4, taken_at=10.02, now=10.03), 3)  # 200/s: batches 250 ms apart, 20 ms of it the window
0.22
>>> round(pacing.pause_after(50, taken_at=10.27, now=10.28), 3)  # 50 in 250 ms: still 200/s
0.22
>>> pacing.pause_after(1000, taken_at=10.30, now=10.31)  # full: the traffic is fast, no pause
0.0
>>> round(pacing.pause_after(25, taken_at=10.34, now=10.36), 3)  # 25 in 40 ms, 625/s: 80 ms apart
0.04
"""

from __future__ import annotations

__all__ = ["BatchPacing"]


class BatchPacing:
    """Spaces one agent's batches ``fill / rate`` seconds apart, within [``window_s``, ``longest_s``], the rate being
    the last batch's size over the time since the batch before it was taken."""

    def __init__(self, window_s: float, fill: int, longest_s: float) -> None:
        if fill < 1:
            raise ValueError(f"fill must be at least 1, got {fill}")
        if longest_s < window_s:
            raise ValueError(f"the longest window ({longest_s}s) must be at least the window ({window_s}s)")
        self.window_s = window_s
        self.fill = fill
        self.longest_s = longest_s
        self._last_taken: float | None = None

    def spacing(self, size: int, since_last_s: float) -> float:
        """Seconds from one batch to the next, after a batch of ``size`` that arrived in ``since_last_s``.

        >>> pacing = BatchPacing(window_s=0.02, fill=50, longest_s=0.25)
        >>> pacing.spacing(4, 0.02), pacing.spacing(10, 0.04), pacing.spacing(100, 0.02), pacing.spacing(0, 1.0)
        (0.25, 0.2, 0.02, 0.25)
        """
        if self.fill == 1:  # a batch of one is full: never wait for more
            return self.window_s
        if size <= 0:
            return self.longest_s
        wanted = self.fill * since_last_s / size  # fill / rate
        return min(max(wanted, self.window_s), self.longest_s)

    def pause_after(self, size: int, taken_at: float, now: float) -> float:
        """How long to wait, at ``now`` (monotonic seconds), before taking the next batch, after one of ``size``
        events taken at ``taken_at`` was finished. Taking it closes a window later, so the window is deducted."""
        last, self._last_taken = self._last_taken, taken_at
        if last is None or taken_at <= last:
            return 0.0
        spacing = self.spacing(size, taken_at - last)
        return max(0.0, taken_at + spacing - self.window_s - now)
