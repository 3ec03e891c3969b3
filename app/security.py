"""HTTP hardening around Gradio's server (an ASGI middleware installed at launch):

- files are never served as active content: a file route answers with ``X-Content-Type-Options:
  nosniff`` and a Content-Security-Policy that runs nothing, and anything but the app's own images
  (PNG, JPEG, WebP, GIF) and CSV goes out as an attachment, so an uploaded .html, .svg or .js file
  cannot execute in this origin;
- only the documented endpoints answer by name (``/gradio_api/call/<name>`` and the like): the
  page's internal events stay reachable to the page, not callable as a public API;
- Gradio's monitoring and dev routes answer 404.
"""

from __future__ import annotations

import re

INLINE_TYPES = (b"image/png", b"image/jpeg", b"image/webp", b"image/gif", b"text/csv")
FILE_ROUTE = re.compile(r"^(/gradio_api)?/file[=/]")
NAMED_ROUTE = re.compile(r"^(/gradio_api)?/(call/v2|call|run|api)/([^/]+)/?")
BLOCKED = re.compile(r"^(/gradio_api)?/(monitoring|dev/reload|vibe-|undo-vibe-|mcp|run-history|runs/?$)")
CSP = b"default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"


class Hardening:
    """ASGI middleware; ``api_names`` are the endpoints callable by name."""

    def __init__(self, app, api_names: tuple[str, ...] = ()) -> None:
        self.app, self.api_names = app, set(api_names)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if BLOCKED.match(path):
            return await _not_found(send)
        named = NAMED_ROUTE.match(path)
        if named and scope.get("method") == "POST" and named.group(3) not in self.api_names:
            return await _not_found(send)
        if not FILE_ROUTE.match(path):
            return await self.app(scope, receive, send)

        async def send_safely(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"content-security-policy", b"x-content-type-options")]
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"").split(b";")[0].strip()
                headers += [(b"content-security-policy", CSP), (b"x-content-type-options", b"nosniff")]
                if ctype.lower() not in INLINE_TYPES:
                    headers = [(k, v) for k, v in headers if k.lower() != b"content-disposition"]
                    headers.append((b"content-disposition", b"attachment"))
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, send_safely)


async def _not_found(send) -> None:
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": b"Not Found"})
