"""`python -m portal`: serve the page with uvicorn on the site config's [web] address (the stack
starts it so; TWIN_CONFIG selects the site config)."""
from __future__ import annotations

import sys

import uvicorn

from twinning.config import ConfigError, load


def main() -> None:
    try:
        cfg = load()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    web = cfg.web
    uvicorn.run("portal.app:create_app", factory=True, host=web.address, port=web.port,
                workers=web.workers, ssl_certfile=web.tls_cert or None,
                ssl_keyfile=web.tls_key or None, server_header=False,
                # a TLS proxy in front: believe its X-Forwarded-For/-Proto, and nobody else's
                proxy_headers=bool(web.trusted_proxies),
                forwarded_allow_ips=web.trusted_proxies or None,
                log_level="info")


if __name__ == "__main__":
    main()
