"""Production serving: the API under gunicorn, configured in code (no config file to find).

The options and the application; api/gunicorn_conf.py adds logging and metrics hooks and
starts it (`serve_api`)."""

from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication

from forecasting.settings import Settings

log = logging.getLogger(__name__)


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, options: dict):
        self.settings, self.options = settings, options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from . import create_app

        return create_app({"SETTINGS": self.settings})


def gunicorn_options(host: str, port: int, workers: int) -> dict:
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": 4,
        # each worker loads the current model once, then follows promotions itself
        "preload_app": False,
        "timeout": 120,
        "graceful_timeout": 10,
        "accesslog": "-",
        "access_log_format": '%(h)s "%(r)s" %(s)s %(b)s %(M)sms',
        "errorlog": "-",
        "loglevel": "info",
    }


def banner(host: str, port: int) -> str:
    base = f"http://{host}:{port}"
    return (f"serving the API on {base}  (Ctrl-C to stop)\n"
            f"  docs:     {base}/docs\n"
            f"  example:  curl '{base}/v1/forecasts?partner=ISR&intel_type=humint"
            f"&trigger_type=disclosure_incident&severity=3&alignment=1'")
