"""The suites of ``python -m benchmarks``: one module each, registered in :data:`benchmarks.__main__.SUITES`."""
