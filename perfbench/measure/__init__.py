"""The measurement side: harness.py (one point's lifecycle: build, warm up, time, record), timing.py (the
timing loop), telemetry.py (clocks, power, temperature), nvtx_ranges.py (named ranges for traces),
results.py (the result schema and its append-only Parquet store) and result_sets.py (finding sets)."""
