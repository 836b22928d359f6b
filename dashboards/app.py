"""perfbench dashboard: `streamlit run dashboards/app.py -- --results DIR` (or `perfbench dashboard`).

Pages are listed in PAGES; a page whose file is absent is left out, which is the hook for pages
other issues add (the trace helper's "Predicted vs counted": drop `views/traces.py` in place).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import streamlit as st

if __package__ in (None, ""):  # `streamlit run` executes this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboards import data  # noqa: E402

HERE = Path(__file__).resolve().parent
# (file under dashboards/, title, icon, url path)
PAGES = (
    ("views/overview.py", "Accuracy", ":material/checklist:", "accuracy"),
    ("views/curves.py", "Curves", ":material/show_chart:", "curves"),
    ("views/roofline.py", "Roofline", ":material/roofing:", "roofline"),
    ("views/models.py", "Models", ":material/stacks:", "models"),
    ("views/whatif.py", "What-if", ":material/tune:", "what-if"),
    ("views/design.py", "Design space", ":material/scatter_plot:", "design-space"),
    ("views/runs.py", "Runs", ":material/history:", "runs"),
    ("views/traces.py", "Predicted vs counted", ":material/memory:", "traces"),  # issue: traces
    ("views/tp.py", "Tensor parallel", ":material/lan:", "tp"),
)


def pages() -> list:
    return [st.Page(str(HERE / path), title=title, icon=icon, url_path=url, default=i == 0)
            for i, (path, title, icon, url) in enumerate(PAGES) if (HERE / path).exists()]


st.set_page_config(page_title="perfbench", page_icon=":material/speed:", layout="wide")
page = st.navigation(pages())
data.sidebar()
try:
    page.run()
except Exception as exc:  # never a traceback on the page; the log keeps it
    logging.getLogger("perfbench.dashboard").exception("page %s failed", page.title)
    st.error(f"{page.title}: {type(exc).__name__}: {exc}")
