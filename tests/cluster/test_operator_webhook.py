"""The validating admission webhook, for real: kube-apiserver calls the operator's kopf webhook server over TLS.

The operator runs as a subprocess (its settings are read at import, so the webhook must be on from the start),
with a self-signed certificate for 127.0.0.1 made by openssl. The ValidatingWebhookConfiguration it manages
has failurePolicy Fail, so teardown deletes it: later tests must not depend on a stopped webhook.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers import free_port

from .conftest import OPERATOR_ENV
from .helpers import create_endpoint, get_endpoint, wait_for

pytestmark = pytest.mark.cluster
CONFIG = "webhook-test.kubewhisper.dev"  # kopf names the webhook validate-endpoint.<CONFIG>: a domain


@pytest.fixture(scope="module")
def webhook_operator(api, gpu_nodes, control_plane, tmp_path_factory):
    d = tmp_path_factory.mktemp("webhook")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    env = {
        **os.environ,
        **OPERATOR_ENV,
        "KUBECONFIG": control_plane["kubeconfig"],
        "KUBEWHISPER_LEASE_NAME": "webhook-test-operator",
        "KUBEWHISPER_WEBHOOK_ENABLED": "1",
        "KUBEWHISPER_WEBHOOK_PORT": str(port),
        "KUBEWHISPER_WEBHOOK_CERT_FILE": str(d / "cert.pem"),
        "KUBEWHISPER_WEBHOOK_KEY_FILE": str(d / "key.pem"),
        "KUBEWHISPER_WEBHOOK_CONFIG_NAME": CONFIG,
    }
    log = open(d / "operator.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", "-m", "whisper_operator.handlers"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    admission = client.AdmissionregistrationV1Api(api)
    try:
        wait_for(
            lambda: (admission.read_validating_webhook_configuration(CONFIG).webhooks or None)
            if proc.poll() is None
            else pytest.fail((d / "operator.log").read_text()[-3000:]),
            timeout=60,
            what="the webhook configuration",
        )
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        for kind in ("validating", "mutating"):
            try:
                getattr(admission, f"delete_{kind}_webhook_configuration")(CONFIG)
            except ApiException:
                pass


def test_cross_field_rule_refused_at_apply(api, webhook_operator, namespace):
    """bfloat16 where every candidate node is a T4 (CC 7.5) is refused by the API server itself."""
    with pytest.raises(ApiException) as exc:
        create_endpoint(
            api,
            namespace,
            "bad",
            {"model": "openai/whisper-large-v3", "dtype": "bfloat16", "nodeSelector": {"pool": "t4"}},
        )
    assert "UnsupportedDtype" in exc.value.body and "7.5" in exc.value.body
    create_endpoint(
        api,
        namespace,
        "good",
        {"model": "openai/whisper-large-v3", "dtype": "bfloat16", "nodeSelector": {"pool": "h100"}},
    )
    assert get_endpoint(api, namespace, "good")["spec"]["dtype"] == "bfloat16"
    with pytest.raises(ApiException) as exc:  # an update that breaks the rule is refused too
        client.CustomObjectsApi(api).patch_namespaced_custom_object(
            "kubewhisper.dev",
            "v1alpha1",
            namespace,
            "whisperendpoints",
            "good",
            {"spec": {"nodeSelector": {"pool": "t4"}}},
        )
    assert "UnsupportedDtype" in exc.value.body
