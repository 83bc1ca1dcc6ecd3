"""core: features, model, rules and decisions, in plain Python with no Kafka in them."""

from fraudstream.core.native import CORE_CODE

__all__ = ["CORE_CODE"]
