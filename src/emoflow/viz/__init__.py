"""Plots (matplotlib, :mod:`.plots`) and the HTML report (:mod:`.report`: a Jinja2 template in
``templates/``, the plotly figure from :mod:`.figures`, plotly.js inline or shared via :mod:`.assets`)."""
