"""Prometheus scrapes for the end-to-end tests (docs/metrics.md)."""
from __future__ import annotations

import re
import urllib.request

SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)")


def scrape(endpoint) -> dict[tuple, float]:
    """GET /metrics: {(name, ((label, value), ...)): sample}."""
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=5) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and not line.startswith("#"):
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))
            samples[(m.group(1), labels)] = float(m.group(3))
    return samples
