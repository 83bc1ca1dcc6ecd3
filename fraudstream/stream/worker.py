"""Start one worker: metrics endpoint, then the faust app."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import faust
from prometheus_client import start_http_server

from fraudstream.config import Settings
from fraudstream.logs import install_masking
from fraudstream.stream.app import FraudApp

__all__ = ["GC_THRESHOLDS", "run_worker", "start_metrics_server"]

log = logging.getLogger("fraudstream.worker")

#: The cyclic garbage collector's thresholds in a worker (CPython's: 700, 10, 10). A worker makes some hundreds of
#: objects per authorization, nearly all freed at once by reference counting, and keeps a large heap of live ones
#: (card and merchant states, caches, faust's and aiokafka's objects) that every older-generation collection walks:
#: at CPython's thresholds a young collection ran every few authorizations and a full one every 7,500-15,000, for
#: 100-150 ms each (docs/capacity.md). Rarer collections cost less in all, the heap built at start (modules, the
#: app) is frozen out of them. (A middle generation collected every second young collection, 20,000 / 2 / 1,000,
#: cut its longest pause at saturation from about 200 ms to 70, for the same total, but no run showed a lower p99
#: for it, and it promotes short-lived cycles to the old generation ten times sooner, where they wait for a full
#: collection. The soak's memory rose as much with either: the merchant states filling, docs/capacity.md.)
GC_THRESHOLDS = (20_000, 20, 100)


def start_metrics_server(settings: Settings, tries: int = 16) -> int:
    """Serve /metrics; returns the port.

    Several workers on one host must not collide: when the configured port is
    taken, the next ones are tried, and the one chosen is printed. 0 picks any
    free port.
    """
    port = settings.metrics_port
    for attempt in range(tries if port else 1):
        try:
            server, _thread = start_http_server(port + attempt if port else 0, addr=settings.metrics_host)
            return int(server.server_port)
        except OSError:
            log.info("metrics port %d is taken, trying the next", port + attempt)
    raise OSError(f"no free metrics port in {port}..{port + tries - 1} on {settings.metrics_host}")


def run_worker(settings: Settings, loglevel: str = "info") -> int:
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    port = start_metrics_server(settings)
    print(f"fraudstream worker: metrics on http://{settings.metrics_host}:{port}/metrics", flush=True)
    fraud = FraudApp(settings, settings.bootstrap_servers)
    worker = faust.Worker(fraud.app, loglevel=loglevel, quiet=True)
    install_masking()
    gc.freeze()  # what is built by now lives as long as the worker: never walked by the collector again
    gc.set_threshold(*GC_THRESHOLDS)
    worker.execute_from_commandline()  # returns on SIGTERM/SIGINT after a clean shutdown
    return 0
