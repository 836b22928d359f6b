"""`perfbench calibrate`'s microbenchmarks: bench.py (the shared timing core), one module per section
of the calibration file (each with its benchmark, its fit where it has one), kernels/ (one module per
kernel family), pooling.py (medians across leases), run.py (calibrate, re-measure, refit) and
uncertainty.py (the uncertainty section, from held-out result sets)."""
