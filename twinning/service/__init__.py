"""The operations twinctl and the subscriber's web page both perform, and the rules they obey.

One home for each rule: the number rules come from twinning.numbers, the tiers from
twinning.licence; what a subscriber, a twin and a status may be is decided here, once. Every
function takes an open psycopg connection (dict rows) and leaves the transaction to its caller;
a refusal is a ServiceError (or twinning.numbers.NumberError) whose str() is the one-line reason
both the CLI and the page show.
"""
from .errors import Conflict, NotFound, ServiceError  # noqa: F401
