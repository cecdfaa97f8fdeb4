"""Handoff: the stitched-call model (model.py, pure), its SDP (sdp.py) and its KEMI side
(routes.py)."""
