"""The one shape every error takes on the wire: `{"error": {"code", "message"}}` with the right status.

Handlers raise `ApiError`; the middleware here turns it, aiohttp's own HTTP errors (unknown route,
wrong method, oversized body) and anything unexpected into that JSON body, so no client ever sees a
stack trace.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from pygmy.common.jsonio import json_response

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp raises these for requests that never reach a handler; give them stable codes.
_HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    503: "unavailable",
}


class ApiError(Exception):
    """An error with an HTTP status, a machine-readable code and a sentence for people."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def to_body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def not_found(message: str, code: str = "not_found") -> ApiError:
    return ApiError(404, code, message)


# 503 codes that promise the request was not carried out: a retry, anywhere, cannot do it twice. Any other
# 503 to a write (`outcome_unknown`, or a body that is not ours) leaves its outcome open.
NOT_CARRIED_OUT = frozenset({"unavailable", "not_leader", "loading", "not_ready"})


def unavailable(message: str, retry_after: int = 1, *, code: str = "unavailable") -> ApiError:
    """503. Code "unavailable": the request was not carried out. Code "outcome_unknown": it may have
    been (a tier went silent after receiving it); retry with the same Idempotency-Key to find out."""
    return ApiError(503, code, message, headers={"Retry-After": str(retry_after)})


def error_response(err: ApiError) -> web.Response:
    return json_response(err.to_body(), status=err.status, headers=err.headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "error")
        message = _http_message(exc)
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(ApiError(exc.status, code, message, headers=headers))
    except (RequestPayloadError, HttpProcessingError) as exc:
        # The client's body broke while it was read (a gzip that is not gzip, a broken chunk): its fault.
        log.info("%s %s: unreadable request body (%s)", request.method, request.path, one_line(exc.__cause__ or exc))
        response = error_response(ApiError(400, "bad_body", "the request body could not be read or decoded"))
        response.force_close()  # what is left of the body cannot be parsed: the connection is not reusable
        return response
    except ConnectionResetError:
        # The client hung up mid-request (while its body was read): nothing to answer, nothing broken.
        log.info("%s %s: the client closed the connection before its request was complete", request.method, request.path)
        return error_response(ApiError(400, "incomplete_request", "the connection closed before the request was complete"))
    except Exception:  # the last line of defence: log it, answer with JSON, never a traceback
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(ApiError(500, "internal", "internal error; see the server log"))


def one_line(value: object) -> str:
    """An exception's text on one line (aiohttp's parser errors quote the bad bytes over several)."""
    return " ".join(str(value).split())


def _http_message(exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "no such route"
    if exc.status == 405:
        return f"method {getattr(exc, 'method', '')} not allowed here".replace("  ", " ")
    if exc.status == 413:
        return "request body too large"
    return exc.reason
