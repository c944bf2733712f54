"""The Kubernetes client the reconciler uses: every request has a timeout, lists are paginated.

A hung connection would otherwise hold an endpoint's lock (and a thread) forever; with a timeout it becomes an
error the next trigger retries.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes import config as kconfig
from kubernetes.client import rest

PAGE = 500


class TimeoutApiClient(client.ApiClient):
    """An ApiClient whose every request defaults to ``timeout`` seconds (connect and read)."""

    def __init__(self, configuration: client.Configuration | None = None, timeout: float = 30.0) -> None:
        super().__init__(configuration)
        self.timeout = timeout

    def call_api(
        self,
        method: str,
        url: str,
        header_params: dict[str, Any] | None = None,
        body: Any = None,
        post_params: list[tuple[str, Any]] | None = None,
        _request_timeout: Any = None,
    ) -> rest.RESTResponse:
        return super().call_api(
            method, url, header_params, body, post_params, _request_timeout=_request_timeout or self.timeout
        )


def load_api_client(timeout: float) -> TimeoutApiClient:
    """In-cluster service account, else $KUBECONFIG (read now, not at import time)."""
    cfg = client.Configuration()
    try:
        kconfig.load_incluster_config(client_configuration=cfg)
    except kconfig.ConfigException:
        kconfig.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None, client_configuration=cfg)
    return TimeoutApiClient(cfg, timeout)


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.apis = client.ApisApi(api)

    def plain(self, obj: Any) -> Any:
        return self.api.sanitize_for_serialization(obj)

    def list_all(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """Every item of a list call, page by page (``limit``/``continue``), as plain dicts."""
        items: list[dict[str, Any]] = []
        token = None
        while True:
            page = self.plain(fn(*args, limit=PAGE, _continue=token, **kwargs))
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
