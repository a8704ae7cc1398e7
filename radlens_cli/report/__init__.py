"""The self-contained HTML report (`radlens report`): inputs, figures, HTML.

data.py reads and normalises the inputs (tolerant of extra columns), figures.py draws
deterministic matplotlib PNGs, html.py assembles one file with everything embedded.
"""
