"""The committed snapshot of the API document (docs/openapi.json) and the check against it.

The snapshot is the document an instance with the default settings serves (open reads, the
seed codebook data/codebook.toml), whatever the environment of the one who writes it: any
change to the contract shows as a diff of that file in review. Update it with
`make openapi-snapshot` (`python -m api.snapshot`) after reviewing the change.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from forecasting.settings import load_settings

SNAPSHOT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def served_document(env: dict[str, str] | None = None) -> dict[str, Any]:
    """/openapi.json of an app on a throwaway instance; `env`: FORECAST_* settings (none read
    from the process environment)."""
    from . import create_app

    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings({"FORECAST_INSTANCE": folder, **(env or {})})
        app = create_app({"SETTINGS": settings})
        try:
            return app.test_client().get("/openapi.json").get_json()
        finally:
            app.extensions["forecasting"].database.dispose()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def differences(served: Any, committed: Any, where: str = "") -> list[str]:
    """Where two documents differ, as JSON-pointer-like paths (e.g. `/paths/~1v1~1vocab`)."""
    if isinstance(served, dict) and isinstance(committed, dict):
        out = []
        for key in dict.fromkeys([*committed, *served]):
            here = f"{where}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if key not in served:
                out.append(f"{here}: removed")
            elif key not in committed:
                out.append(f"{here}: added")
            else:
                out.extend(differences(served[key], committed[key], here))
        return out
    if served != committed:
        return [f"{where or '/'}: changed"]
    return []


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else SNAPSHOT
    path.write_text(render(served_document()), encoding="utf-8")
    print(f"wrote {path}; review its diff before committing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
