"""Publishing job messages: defined once in `healer_core.publisher` (the service republishes too)."""

from healer_core.publisher import Publisher, PubSubPublisher

__all__ = ["PubSubPublisher", "Publisher"]
