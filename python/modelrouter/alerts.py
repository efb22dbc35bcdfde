"""Notification sinks for :class:`modelrouter.AlertManager`.

A sink is any callable taking one :class:`modelrouter.Alert`; pass it as ``on_alert=`` or to
``AlertManager.add_sink``. A sink that raises is logged (logger ``modelrouter.alerts``) and
skipped: the alert still reaches the history, the other sinks and ``evaluate``'s result.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Callable

from ._core import Alert

__all__ = ["webhook_sink"]


def webhook_sink(
    url: str, timeout_s: float = 2.0, headers: dict[str, str] | None = None
) -> Callable[[Alert], None]:
    """A sink that POSTs ``alert.to_dict()`` as JSON to ``url``.

    Only ``http`` and ``https`` URLs are accepted. Non-2xx answers and network errors raise
    (``urllib.error.URLError``), which the AlertManager logs without losing the alert.
    """
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"url: must start with http:// or https://, got {url!r}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s: must be > 0, got {timeout_s}")
    base_headers = {"Content-Type": "application/json", **(headers or {})}

    def send(alert: Alert) -> None:
        body = json.dumps(alert.to_dict()).encode()
        request = urllib.request.Request(url, data=body, headers=base_headers, method="POST")
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            response.read()

    return send
