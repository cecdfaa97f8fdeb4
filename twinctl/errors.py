"""Errors twinctl reports as one line and a non-zero exit code.

They are the service layer's (twinning.service.errors), which the web page shows too: a rule's
refusal reads the same wherever it is met.
"""
from twinning.service.errors import Conflict, NotFound  # noqa: F401
from twinning.service.errors import ServiceError as TwinctlError  # noqa: F401
