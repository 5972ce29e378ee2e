"""The ingest step: event → validated object → job document → Pub/Sub message."""
