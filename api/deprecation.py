"""Deprecating an operation, as docs/api.md (Versioning) promises.

A view decorated with `deprecated(since, sunset, successor)` keeps answering as before, and
every answer (errors included) carries `Deprecation: @<unix time>` (RFC 9745), `Sunset:
<HTTP date>` (RFC 8594) and `Link: <successor>; rel="successor-version"`; the document marks
the operation `deprecated` and says when it goes and what replaces it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from email.utils import format_datetime

from flask import Flask, Response, current_app, request

HEAD_METHODS = {"HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Deprecation:
    since: dt.datetime
    sunset: dt.datetime
    successor: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Deprecation": f"@{int(self.since.timestamp())}",
                "Sunset": format_datetime(self.sunset, usegmt=True),
                "Link": f'<{self.successor}>; rel="successor-version"'}


def _day(text: str, field: str) -> dt.datetime:
    try:
        return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not a date (YYYY-MM-DD)") from None


def deprecated(since: str, sunset: str, successor: str):
    """Mark a view deprecated from `since` until `sunset` (dates), replaced by `successor`."""
    notice = Deprecation(_day(since, "since"), _day(sunset, "sunset"), successor)
    if notice.sunset <= notice.since:
        raise ValueError(f"sunset: {sunset} must come after since ({since})")

    def decorate(view):
        view.deprecation = notice
        return view

    return decorate


def _notice() -> Deprecation | None:
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(view, "deprecation", None)


def add_deprecation_headers(response: Response) -> Response:
    if (notice := _notice()) is not None:
        response.headers.update(notice.headers)
    return response


def mark_deprecated(spec: dict, app: Flask) -> dict:
    """Set `deprecated` on the document's operations of deprecated views."""
    for rule in app.url_map.iter_rules():
        notice = getattr(app.view_functions.get(rule.endpoint), "deprecation", None)
        if notice is None:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - HEAD_METHODS):
            operation = spec.get("paths", {}).get(path, {}).get(method.lower())
            if operation is not None:
                operation["deprecated"] = True
                operation["description"] = (
                    f"{operation.get('description', '')}\n\nDeprecated since "
                    f"{notice.since:%Y-%m-%d}; removed after {notice.sunset:%Y-%m-%d}; use "
                    f"{notice.successor}.").strip()
    return spec


def init_deprecation(app: Flask) -> None:
    app.after_request(add_deprecation_headers)
