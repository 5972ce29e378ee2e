"""Healer: colorectal histopathology screening with MedGemma, event-driven on Google Cloud."""
