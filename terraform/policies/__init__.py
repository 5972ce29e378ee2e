"""Healer's custom checkov checks (loaded with --external-checks-dir terraform/policies)."""
