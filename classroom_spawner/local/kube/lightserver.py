"""The light singleuser stand-in: one in-process HTTP server per pod instead of
a real ``jupyterhub-singleuser`` process, for benchmarks with hundreds of users.

It listens on the pod's IP and port (from ``JUPYTERHUB_SERVICE_URL``, else the
container's first port, else 8888) and answers under the server's base URL
(``JUPYTERHUB_SERVICE_PREFIX``):

- ``{base}api`` -> ``{"version": ...}``, ``{base}api/status`` -> a status like
  jupyter-server's, ``{base}api/kernels`` and ``{base}api/sessions`` -> ``[]``;
- anything else under the base URL -> a small HTML page (200);
- anything outside it -> 404.

That is enough for JupyterHub (``wait_up`` accepts any non-5xx answer) and the
proxy. It does not check tokens, run kernels, or report activity to the Hub;
a browser gets a placeholder page, not JupyterLab.
"""

import json
import logging

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from .timeutil import rfc3339_micro

log = logging.getLogger(__name__)

JUPYTER_SERVER_VERSION = "2.0.0-light"


class _LightHandler(web.RequestHandler):
    def initialize(self, state):
        self.state = state

    def set_default_headers(self):
        self.set_header("X-Classroom-Standin", "light-singleuser")

    def _route(self):
        base = self.state["base_url"]
        path = self.request.path
        if not (path + "/").startswith(base):
            raise web.HTTPError(404)
        rest = path[len(base) :] if path.startswith(base) else ""
        return rest.strip("/")

    def get(self, *args):
        rest = self._route()
        self.state["requests"] += 1
        if rest == "api":
            self.finish({"version": JUPYTER_SERVER_VERSION})
        elif rest == "api/status":
            self.finish(
                {
                    "started": self.state["started"],
                    "last_activity": rfc3339_micro(),
                    "connections": 0,
                    "kernels": 0,
                }
            )
        elif rest in ("api/kernels", "api/sessions", "api/terminals"):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps([]))
        else:
            self.set_header("Content-Type", "text/html")
            self.finish(
                "<!doctype html><title>light singleuser</title>"
                f"<p>Light singleuser stand-in for pod {self.state['pod']}</p>"
            )

    head = get


class LightServer:
    """An HTTP server on ``ip:port`` answering for one pod."""

    def __init__(self, ip, port, base_url, pod):
        self.ip = ip
        self.port = port
        self.state = {
            "base_url": base_url if base_url.endswith("/") else base_url + "/",
            "started": rfc3339_micro(),
            "pod": pod,
            "requests": 0,
        }
        self._server = None

    def start(self):
        app = web.Application(
            [(r"/.*", _LightHandler, {"state": self.state})],
            log_function=lambda h: None,
        )
        self._server = HTTPServer(app)
        self._server.add_sockets(bind_sockets(self.port, address=self.ip))
        log.debug(
            "light singleuser for %s on %s:%s%s",
            self.state["pod"],
            self.ip,
            self.port,
            self.state["base_url"],
        )

    async def stop(self):
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None

    @property
    def running(self):
        return self._server is not None
