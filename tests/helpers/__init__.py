"""Test helpers, imported as `helpers.<module>` (tests/ is on pytest's pythonpath; the benches
add it themselves). Fixtures stay in conftest.py; nothing here is a fixture."""
