"""Real-browser tests of the Alert Manager (see conftest.py)."""
