"""Healer's contracts, shared by every deployable.

`schema` defines the Firestore job document, the Pub/Sub job message and the verdict once;
`ids` derives job ids; `store` is the only code that reads or writes `jobs/{job_id}`;
`logs` writes JSON lines Cloud Logging understands. The ingest function's deploy bundle
copies this package in (see `make function-bundle`), so it depends only on pydantic and
google-cloud-firestore.
"""
