"""The local stack: the whole pipeline on this machine, on the official emulators.

`up()` starts (in the background, logs under `.healer/logs/`) the Pub/Sub and Firestore
emulators, gcp-storage-emulator (through a launcher that publishes Cloud Storage's finalize
notifications), the topics and subscriptions mirroring Terraform, the ingest and reconcile
functions under functions-framework, the inference service under uvicorn, and the stand-ins for
Pub/Sub push, Eventarc and Cloud Scheduler. `down()` stops exactly the processes `up()`
recorded. Both are idempotent.
"""

from healer.stack.config import StackConfig
from healer.stack.control import down, status, up

__all__ = ["StackConfig", "down", "status", "up"]
