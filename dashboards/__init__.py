"""Streamlit dashboard over perfbench results and the analytic model (`perfbench dashboard`)."""
