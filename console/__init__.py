"""Healer's review console: a FastAPI backend and a React frontend for lab staff.

The browser uploads straight to the inbox bucket through signed URLs (so the same Eventarc
path runs as for any other upload) and reads jobs and verdicts from Firestore via the backend.
"""
