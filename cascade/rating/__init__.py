"""Blind pairwise preference studies (``cascade rate``): raters in a browser see one prompt and two models'
videos side by side, sides drawn at random, and answer which looks better and which matches the text better;
every vote goes to SQLite in one transaction; ``cascade rate report`` gives win / tie / loss with bootstrap
intervals over prompts, rater agreement, position bias and attention-check failures.

:mod:`.study` (the folders), :mod:`.store` (SQLite), :mod:`.checks` and :mod:`.media` (what is played),
:mod:`.server` (the page and its API), :mod:`.statistics` and :mod:`.report`, :mod:`.simulated` (raters
without people).
"""
