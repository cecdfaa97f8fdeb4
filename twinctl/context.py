"""What every command shares: the site config (from --config or $TWIN_CONFIG)."""
from __future__ import annotations

from functools import lru_cache

from twinning.config import SiteConfig, load

_config_path: str | None = None


def set_config_path(path: str | None) -> None:
    global _config_path
    _config_path = path
    config.cache_clear()


def explicit() -> bool:
    """Whether a site config was named (--config or $TWIN_CONFIG)."""
    import os
    return bool(_config_path or os.environ.get("TWIN_CONFIG"))


@lru_cache(maxsize=1)
def config() -> SiteConfig:
    return load(_config_path)
