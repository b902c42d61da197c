"""The web service (``emoflow serve``, extra ``emoflow[serve]``): an HTTP API and one page."""
