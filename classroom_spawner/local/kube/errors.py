"""Kubernetes API errors and the ``Status`` bodies a real API server sends with them.

Every failed request is answered with a ``v1.Status`` object, for example::

    {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
     "message": "pods \\"foo\\" not found", "reason": "NotFound",
     "details": {"name": "foo", "kind": "pods"}, "code": 404}

For NotFound/AlreadyExists/Conflict the real server puts the *resource* (plural,
e.g. ``pods``) in ``details.kind``; for Invalid it puts the *Kind* (``Pod``).
"""


def status_body(code, reason, message, details=None):
    """A ``v1.Status`` dict describing a failure."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details:
        body["details"] = details
    body["code"] = code
    return body


def success_body(details=None):
    """The ``v1.Status`` a real server returns for e.g. a collection delete."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        body["details"] = details
    return body


class ApiError(Exception):
    """An error answered with a ``Status`` body and an HTTP status code."""

    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self):
        return status_body(self.code, self.reason, self.message, self.details)

    def __repr__(self):
        return f"ApiError({self.code}, {self.reason!r}, {self.message!r})"


def _details(resource, name):
    details = {}
    if name:
        details["name"] = name
    details["kind"] = resource
    return details


def not_found(resource, name):
    return ApiError(
        404, "NotFound", f'{resource} "{name}" not found', _details(resource, name)
    )


def already_exists(resource, name):
    return ApiError(
        409,
        "AlreadyExists",
        f'{resource} "{name}" already exists',
        _details(resource, name),
    )


def conflict(resource, name, why):
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource} "{name}": {why}',
        _details(resource, name),
    )


def stale_update(resource, name):
    return conflict(
        resource,
        name,
        "the object has been modified; please apply your changes to the latest"
        " version and try again",
    )


def invalid(kind, name, causes):
    """422 Invalid. ``causes`` is a list of ``(reason, field, message)``."""
    parts = [f"{field}: {msg}" if field else msg for _, field, msg in causes]
    if len(parts) == 1:
        summary = parts[0]
    else:
        summary = "[" + ", ".join(parts) + "]"
    details = {
        "name": name or "",
        "kind": kind,
        "causes": [
            {"reason": reason, "message": msg, "field": field}
            for reason, field, msg in causes
        ],
    }
    return ApiError(
        422, "Invalid", f'{kind} "{name or ""}" is invalid: {summary}', details
    )


def expired(message):
    """410 with reason Expired, what modern API servers send for a stale resourceVersion."""
    return ApiError(410, "Expired", message)


def bad_request(message):
    return ApiError(400, "BadRequest", message)


def forbidden(resource, name, why):
    return ApiError(
        403,
        "Forbidden",
        f'{resource} "{name}" is forbidden: {why}',
        _details(resource, name),
    )


def method_not_allowed(
    message="the server does not allow this method on the requested resource",
):
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type):
    return ApiError(
        415,
        "UnsupportedMediaType",
        f'the body of the request was in an unknown format - accepted media types include: '
        f'application/json-patch+json, application/merge-patch+json, '
        f'application/strategic-merge-patch+json (got "{content_type}")',
    )


def unauthorized():
    return ApiError(401, "Unauthorized", "Unauthorized")


def internal_error(
    message="an error on the server has prevented the request from succeeding",
):
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


def service_unavailable(message="the server is currently unable to handle the request"):
    return ApiError(503, "ServiceUnavailable", message)


def too_many_requests(retry_after=1):
    return ApiError(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
        {"retryAfterSeconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


def timeout(message):
    return ApiError(504, "Timeout", message)
