"""Healer's inference service: Pub/Sub push consumer and the seed's /predict, on MedGemma.

Importing this package must stay cheap: torch and transformers load only inside the engine,
which the app's lifespan builds.
"""
