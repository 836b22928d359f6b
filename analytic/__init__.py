"""Analytic cost model: FLOPs, bytes, roofline time and memory per layer and model (torch-free)."""
