"""How long an agent waits for its next batch: longer while traffic is slow, so that each batch (and each produce
batch it writes, one per topic-partition it touches) holds more.

A worker's batch closes ``FRAUDSTREAM_BATCH_WINDOW_S`` (20 ms) after the previous one, or sooner when it is full. At
200 authorizations a second that is 4 authorizations a batch, over 3 partitions: the worker then writes about one
produce batch per record, and the embedded broker's fetch costs CPU in proportion to the record batches a partition
holds (it keeps them all: no retention), so a steady 200/s brought it to a full core within minutes (docs/capacity.md,
The soak at 200/s). :class:`BatchPacing` estimates the rate an agent's batches arrive at and, while it is slow
(at most ``FRAUDSTREAM_BATCH_FILL / FRAUDSTREAM_BATCH_WINDOW_MAX_S``, 200/s by default), spaces its batches
``FRAUDSTREAM_BATCH_WINDOW_MAX_S`` apart: at 200/s, batches of 100 every 0.5 s. Above that the spacing falls with the
square of the rate (125 ms at 400/s, 41 ms at 700/s), down to the window from 1,000/s on: the latency it costs is
paid where the embedded broker needs it, by slow traffic that runs for hours, not by fast traffic, which the
embedded broker does not hold for long anyway and which fills its batches by itself.

The loop keeps its batch window; it only pauses after a batch it finished (:func:`fraudstream.stream.delivery
.batches`), and what arrives meanwhile waits for the next batch. The loops of what comes from outside
(authorizations, labels, reissues) and of the low-rate internal topics pause.

>>> pacing = BatchPacing(window_s=0.02, fill=100, longest_s=0.5)
>>> pacing.pause_after(4, taken_at=10.0, now=10.01)  # the first batch: no rate known yet
0.0
>>> round(pacing.pause_after(4, taken_at=10.02, now=10.03), 3)  # 200/s: batches 0.5 s apart, 20 ms of it the window
0.47
>>> round(pacing.pause_after(100, taken_at=10.52, now=10.55), 3)  # 100 in 0.5 s: still 200/s
0.45
>>> pacing.pause_after(1000, taken_at=10.6, now=10.7)  # full: the traffic is fast, no pause
0.0
>>> round(pacing.pause_after(40, taken_at=10.75, now=10.76), 3)  # 40 in 150 ms, 267/s: 281 ms apart
0.251
"""

from __future__ import annotations

__all__ = ["BatchPacing"]


class BatchPacing:
    """Spaces one agent's batches ``longest_s`` apart while its traffic is slower than ``fill / longest_s`` per second,
    less above, down to ``window_s`` (see :meth:`spacing`), the rate being the last batch's size over the time since
    the batch before it was taken."""

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
        """Seconds from one batch to the next, after a batch of ``size`` that arrived in ``since_last_s``: the
        longest up to the slow rate (``fill / longest_s``), then falling with the square of the rate, down to the
        window: batches of ``fill`` at the slow rate, fewer above it, so that a rate a few times faster pays almost
        nothing for the pacing (at 700/s, 41 ms with the defaults; the embedded broker does not hold such rates for
        long anyway).

        >>> pacing = BatchPacing(window_s=0.02, fill=100, longest_s=0.5)  # the slow rate: 200/s
        >>> [round(pacing.spacing(n, 1.0), 3) for n in (0, 50, 200, 400, 700, 1400)]
        [0.5, 0.5, 0.5, 0.125, 0.041, 0.02]
        """
        if self.fill == 1:  # a batch of one is full: never wait for more
            return self.window_s
        if size <= 0:
            return self.longest_s
        slow = self.fill / self.longest_s
        rate = size / since_last_s
        if rate <= slow:
            return self.longest_s
        return max(self.window_s, self.longest_s * (slow / rate) ** 2)

    def pause_after(self, size: int, taken_at: float, now: float, produced_over_s: float | None = None) -> float:
        """How long to wait, at ``now`` (monotonic seconds), before taking the next batch, after one of ``size``
        events taken at ``taken_at`` was finished. Taking it closes a window later, so the window is deducted.

        ``produced_over_s``: how long the batch's events took to be produced (their newest timestamp minus their
        oldest), if known. After a quiet spell the time since the previous batch says nothing of the traffic's rate:
        traffic starting at 700/s would be taken for a trickle, and paused for the longest spacing.

        >>> pacing = BatchPacing(window_s=0.02, fill=100, longest_s=0.5)
        >>> pacing.pause_after(1, taken_at=0.0, now=0.0)
        0.0
        >>> round(pacing.pause_after(14, taken_at=60.0, now=60.01, produced_over_s=0.02), 3)  # 700/s after quiet
        0.011
        >>> round(pacing.pause_after(14, taken_at=60.1, now=60.11, produced_over_s=0.1), 3)  # not quiet: 140/s
        0.47
        """
        last, self._last_taken = self._last_taken, taken_at
        if last is None or taken_at <= last:
            return 0.0
        since = taken_at - last
        if produced_over_s is not None:
            since = min(since, max(produced_over_s, self.window_s))
        spacing = self.spacing(size, since)
        return max(0.0, taken_at + spacing - self.window_s - now)
