"""The web service (``emoflow serve``, extra ``emoflow[serve]``): an HTTP API and one page.

app.py (routes, middleware, status codes), settings.py (the server's and a request's
settings), uploads.py (taking an upload in), jobs.py (the analyses on disk, their queue and
workers), runner.py (one analysis, with no server path in what a client sees), page.html.
"""
