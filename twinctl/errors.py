"""Errors twinctl reports as one line and a non-zero exit code."""


class TwinctlError(Exception):
    """An error the operator can act on; str() is the whole message."""


class NotFound(TwinctlError):
    pass


class Conflict(TwinctlError):
    pass
