"""Tensor parallelism, measured: distributed.py (launch the ranks, sweep the points, verify the sharded
layers against the single-GPU ones, time the all-reduce), layers.py (the sharded torch layers and
model) and compare.py (measured TP points beside analytic.predict_tp)."""
