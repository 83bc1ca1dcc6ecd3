"""Tools that measure the pipeline, kept apart from what runs it: nothing in the worker or the CLI imports them.

- :mod:`fraudstream.tools.bench` (``make bench``): throughput, latency, the core's cost and memory, side by side
  with a raw confluent-kafka loop.
- :mod:`fraudstream.tools.soak` (``make soak``): one worker for half an hour or more, its latency, memory and state
  sampled each minute.
"""
