"""Start one worker: metrics endpoint, then the faust app."""

from __future__ import annotations

import logging
from pathlib import Path

import faust
from prometheus_client import start_http_server

from fraudstream.config import Settings
from fraudstream.logs import MaskingFilter
from fraudstream.stream.app import FraudApp

__all__ = ["run_worker", "start_metrics_server"]

log = logging.getLogger("fraudstream.worker")


def start_metrics_server(settings: Settings) -> int:
    """Serve /metrics; returns the port (a free one when configured 0)."""
    server, _thread = start_http_server(settings.metrics_port, addr=settings.metrics_host)
    return int(server.server_port)


def run_worker(settings: Settings, loglevel: str = "info") -> int:
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    port = start_metrics_server(settings)
    print(f"fraudstream worker: metrics on http://{settings.metrics_host}:{port}/metrics", flush=True)
    fraud = FraudApp(settings, settings.bootstrap_servers)
    worker = faust.Worker(fraud.app, loglevel=loglevel, quiet=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskingFilter())
    worker.execute_from_commandline()  # returns on SIGTERM/SIGINT after a clean shutdown
    return 0
