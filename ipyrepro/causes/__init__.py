"""Why runs differ: the tracer that names the line, the global-RNG watch, and the deterministic rerun."""
