"""The web app of ``cascade serve``: a gradio app that generates with a cascade in the browser and shows every
stage's frames beside the shapes-world renderer's ground truth, and edits an uploaded video to a prompt.

:mod:`.generation` (settings, checks, the stages run one at a time), :mod:`.views` (pictures, readings,
videos) and the tabs' logic (:mod:`.generate_tab`, :mod:`.edit_tab`) need no gradio; :mod:`.ui` builds the
gradio app from them; :mod:`.cache` bounds the files it keeps.
"""
