"""Validation and look-ups several nouns share: the service layer's (twinning.service), which
the web page calls too; named here for the commands."""
from __future__ import annotations

from twinning.service.accounts import (EXTENSION, check_display_name,  # noqa: F401
                                       check_extension, check_password, digest_hashes,
                                       parse_license, subscriber_row)
