"""Request body size limit, enforced before and while the body streams in.

Uvicorn has no body limit of its own; this middleware refuses a request whose declared
``Content-Length`` is too large at once, and cuts off a chunked body as soon as it passes the
limit - before Starlette's multipart parser spools it to disk. (The nginx config in ``deploy/``
adds the same limit and read timeouts at the edge.)

Cutting off a chunked body means raising from ``receive()``, inside the app. FastAPI turns any
error while it parses a form into its own 400 ("There was an error parsing the body"), so the
middleware does not rely on the exception reaching it: once the body has overflowed, whatever
response the app starts is replaced by the 413, and an exception that escapes is answered with
the 413 too. The message names the configured ``BRAINMRI_MAX_UPLOAD_BYTES``, not the internal
cut-off that allows for multipart framing.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Room for multipart boundaries and part headers around a file of the configured size.
MULTIPART_OVERHEAD = 64 * 1024


class BodyTooLarge(Exception):
    """Raised from ``receive()`` once a streamed body passes the cut-off."""


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_upload = max_body
        self.max_body = max_body + MULTIPART_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await self._reject(send)
            return
        received = 0
        overflowed = False
        started = False
        rejected = False

        async def limited_receive() -> Message:
            nonlocal received, overflowed
            if overflowed:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    overflowed = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, rejected
            if rejected:
                return  # the rest of the app's own answer, already replaced by the 413
            if message["type"] == "http.response.start":
                if overflowed:
                    rejected = True
                    await self._reject(send)
                    return
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
            if overflowed and not started and not rejected:
                await self._reject(send)  # the app gave up on the body without answering
        except BodyTooLarge:
            if not started and not rejected:
                await self._reject(send)
        except Exception:
            # An error caused by the cut-off body (wrapped by whatever parsed it) is the 413.
            if not overflowed or started:
                raise
            if not rejected:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": "request_too_large",
                    "message": f"the request body exceeds the upload limit of "
                    f"{self.max_upload} bytes (BRAINMRI_MAX_UPLOAD_BYTES)",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
