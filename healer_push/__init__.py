"""Pub/Sub push, shared by the services a push subscription calls (the inference service and the
slide service): the envelope (`envelope.py`), OIDC verification of the push token as a FastAPI
dependency (`auth.py`) and the settings both read for it (`settings.py`). No torch."""
