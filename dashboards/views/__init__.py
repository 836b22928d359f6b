"""Dashboard pages, one script each, listed in dashboards/app.py PAGES.

Not named `pages/`: Streamlit treats a `pages/` directory beside the entry script as a legacy
multipage app on a fresh server's first request, which bypasses st.navigation for deep links.
"""
