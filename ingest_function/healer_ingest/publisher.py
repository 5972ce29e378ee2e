"""Publishing job messages to Pub/Sub, and recording on the job that its message went out.

The publisher classes are defined once in `healer_core.publisher`; `healer_core.topics` routes
each message to its task's topic (images to the jobs topic, slides to the slides topic).
"""

from __future__ import annotations

from healer_core.publisher import Publisher, PubSubPublisher
from healer_core.schema import Job, JobMessage
from healer_core.store import JobStore

__all__ = ["PubSubPublisher", "Publisher", "publish_job"]


def publish_job(store: JobStore, publisher: Publisher, job: Job) -> str:
    """Publish `job`'s message, then record the publish on the job. Returns the message id.

    The one way a job's message goes out: ingest, reconcile, the sweep and the CLI's requeue and
    dead-letter replay all call it, so "published_at is set" always means "the server acked it".
    A slide job's message is its `tile` task (`JobMessage.for_job`): with a `TopicRouter` it
    goes to the slides topic.
    """
    message_id = publisher.publish(JobMessage.for_job(job))
    store.mark_published(job.job_id, message_id)
    return message_id
