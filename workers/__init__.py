"""Celery: the app (every setting with its reason), thin named tasks taking ids, the beat schedule."""
