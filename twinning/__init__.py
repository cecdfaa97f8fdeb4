"""The neutral core: site config, number rules and licence rules that routing, twinctl and
rtpctl all use. It imports none of them (tests/unit/test_layers.py checks)."""
