"""MyInvois's standard error response and header parameters, as the sandbox sends them.

Sources: https://sdk.myinvois.hasil.gov.my/standard-error-response/ and
https://sdk.myinvois.hasil.gov.my/standard-header-parameters/.
"""

from __future__ import annotations

import math
import time
from typing import Any

from daemon.sandbox.clock import iso_utc
from daemon.sandbox.ratelimit import SlidingWindow
from daemon.sandbox.server import Response, json_body


def error(
    status: int, code: str, message: str, target: str | None = None, message_ms: str | None = None
) -> Response:
    # Standard Error Response (https://sdk.myinvois.hasil.gov.my/standard-error-response/):
    # {"error": {propertyName, propertyPath, errorCode, error, errorMS, target, innerError}};
    # error is English, errorMS Malay "if available" (else the English text here).
    body: dict[str, Any] = {
        "error": {
            "propertyName": target,
            "propertyPath": target,
            "errorCode": code,
            "error": message,
            "errorMS": message_ms or message,
            "target": target,
            "innerError": [],
        }
    }
    return Response(status, json_body(body), "application/json; charset=utf-8")


def with_headers(response: Response, headers: dict[str, str]) -> Response:
    response.headers = {**headers, **response.headers}
    return response


def rate_headers(window: SlidingWindow, now: float) -> dict[str, str]:
    # Standard header parameters: X-Rate-Limit-Limit and -Remaining on every response.
    return {
        "X-Rate-Limit-Limit": str(window.limit),
        "X-Rate-Limit-Remaining": str(window.remaining(now)),
    }


def limited(headers: dict[str, str], wait: int) -> Response:
    # Standard errors: 429 with "Retry-After ... a number, indicating the seconds";
    # standard headers: X-Rate-Limit-Reset (a DateTime) "will appear only when the
    # limits have been exceeded".
    response = error(429, "TooManyRequests", "Rate limit exceeded")
    reset = iso_utc(math.ceil(time.time()) + wait)
    response.headers = {
        **headers,
        "X-Rate-Limit-Remaining": "0",
        "X-Rate-Limit-Reset": reset,
        "Retry-After": str(wait),
    }
    return response


def refusal(kind: str) -> Response:
    if kind == "400":
        # Standard errors: 400 BadRequest, "Request should not be repeated without
        # modifying the parameters".
        return error(400, "BadRequest", "The request is not valid", None, "Permintaan tidak sah")
    # Standard errors: 403 "client does not have access to the API or data requested";
    # when it stops is not documented (a transient refusal).
    return error(403, "Forbidden", "Access to the data requested is denied")


def server_error(kind: str) -> Response:
    # Standard errors: 500 InternalServerError, 503 ServiceUnavailable.
    code = "InternalServerError" if kind == "500" else "ServiceUnavailable"
    return error(int(kind), code, "Please try again later")
