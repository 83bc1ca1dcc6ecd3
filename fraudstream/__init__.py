"""fraudstream: streaming card-fraud monitoring on Kafka."""

__version__ = "0.1.0"
__all__ = ["__version__"]
