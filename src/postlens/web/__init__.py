"""web: the dashboard (``postlens serve``) over the history database's summaries, and the
chart code (static/charts.js, the vendored uPlot) the HTML report inlines too."""
