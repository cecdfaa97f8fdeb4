"""Refusals of the service layer: str() is the whole one-line reason shown to the person."""


class ServiceError(Exception):
    """A request the rules refuse, or one the person can correct."""


class NotFound(ServiceError):
    pass


class Conflict(ServiceError):
    pass
