"""Benchmarks of scim-bridge (``python -m bench``); not part of the test suite."""
