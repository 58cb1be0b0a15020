"""Lesson repositories: validation, and the sync that runs in the init container."""
