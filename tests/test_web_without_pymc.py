"""A web worker serving reads never imports PyMC or PyTensor (only fits and evaluation do),
nor scoringrules (it compiles numba kernels for about 3 s on import: only scoring needs it)."""

import json
import shutil
import subprocess
import sys

SCRIPT = r"""
import json, sys
from api import create_app
from forecasting.settings import load_settings

app = create_app({"SETTINGS": load_settings(), "TESTING": True})
client = app.test_client()
routes = [
    "/health", "/ready", "/openapi.json", "/v1/vocab",
    "/v1/forecasts?partner=ISR&intel_type=humint",
    "/v1/forecasts/grid?severity=3",
    "/v1/forecasts/compare?partner=ISR&intel_type=humint&severity_a=0&severity_b=3",
    "/v1/models", "/v1/models/current", "/v1/models/current/diagnostics",
    "/v1/episodes?limit=5", "/v1/priors", "/v1/refits",
]
statuses = {route: client.get(route).status_code for route in routes}
# (ArviZ 1.3 itself imports numpyro and jax through arviz_base.io_numpyro: not ours to avoid)
loaded = sorted(m for m in ("pymc", "pytensor", "nutpie", "scoringrules") if m in sys.modules)
print(json.dumps({"statuses": statuses, "loaded": loaded}))
"""


def test_every_read_route_is_served_without_importing_pymc(fitted_instance, tmp_path):
    instance = tmp_path / "instance"
    shutil.copytree(fitted_instance.settings.instance_path, instance)
    env = {"FORECAST_INSTANCE": str(instance), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(status == 200 for status in result["statuses"].values()), result["statuses"]
    assert result["loaded"] == [], f"a read imported {result['loaded']}"
