"""The console's HTTP backend: job listing and detail, previews, signed uploads, static files.

Importing it stays cheap: no Google client is built until the app factory runs.
"""
