"""Publishing job messages: defined once in `healer_core.publisher` (the service republishes too)."""

from healer_core.publisher import Publisher, PubSubPublisher, publish_job

__all__ = ["PubSubPublisher", "Publisher", "publish_job"]
