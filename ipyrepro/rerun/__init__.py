"""The engine behind `ipyrepro.compare` and `%%repro`: rerun, compare, and diagnose a difference."""
