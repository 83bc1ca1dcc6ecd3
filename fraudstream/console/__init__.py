"""``fraudstream console``: the monitoring center's web console, a process of its own.

It talks to the pipeline only through its topics and the workers' metrics:

- :mod:`~fraudstream.console.view`: a bounded picture of the pipeline, built from the messages of the scores,
  alerts, labels, reissues, rules and audit topics (plain Python, no Kafka);
- :mod:`~fraudstream.console.feed`: the thread that reads those topics from the beginning into the view;
- :mod:`~fraudstream.console.sampler`: the workers' Prometheus metrics, sampled into a bounded history;
- :mod:`~fraudstream.console.actions`: labels, fraud reports, reissues and rule changes, done by the CLI's own
  functions (:mod:`fraudstream.operators`), each written to the audit log;
- :mod:`~fraudstream.console.security`: users (scrypt-hashed passwords), sessions and CSRF tokens;
- :mod:`~fraudstream.console.validation`: every form field, checked with a clear message;
- :mod:`~fraudstream.console.pages` and :mod:`~fraudstream.console.app`: the HTML and the aiohttp routes;
  ``templates/`` and ``static/`` are served from the package (nothing from the internet).
"""

__all__ = ["run_console"]


def run_console(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See :func:`fraudstream.console.app.run_console` (imported on use: aiohttp loads only for the console)."""
    from fraudstream.console.app import run_console as run

    return run(*args, **kwargs)
