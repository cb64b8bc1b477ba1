"""gradzoo trainers: the flag-free loop and runner, and the absl mains.

Tested by tests/trainers.
"""
