"""Measured against predicted, and shown: compare.py (join result sets with the model's predictions, error
metrics), accuracy.py (docs/accuracy.md from the indexed result sets), figures.py (the plotly figures the
report and the dashboard share), model_views.py (model-level tables: memory, largest batch, speedups)
and html_page.py (the self-contained HTML report of `perfbench compare --html`)."""
