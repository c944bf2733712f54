"""The validating admission webhook, for real: kube-apiserver calls the operator's kopf webhook server over TLS.

The operator runs as a subprocess (its settings are read at import, so the webhook must be on from the start),
with a self-signed certificate for 127.0.0.1 made by openssl. The ValidatingWebhookConfiguration is created here,
as the chart's templates/webhook.yaml does (the operator may not create one); it has failurePolicy Fail, so
teardown deletes it: later tests must not depend on a stopped webhook.
"""

from __future__ import annotations

import base64
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
        admission.create_validating_webhook_configuration(
            {
                "metadata": {"name": CONFIG},
                "webhooks": [
                    {
                        "name": f"validate-endpoint.{CONFIG}",
                        "admissionReviewVersions": ["v1", "v1beta1"],
                        "sideEffects": "None",
                        "failurePolicy": "Fail",
                        "timeoutSeconds": 10,
                        "clientConfig": {
                            "url": f"https://127.0.0.1:{port}/validate-endpoint",
                            "caBundle": base64.b64encode((d / "cert.pem").read_bytes()).decode(),
                        },
                        "rules": [
                            {
                                "apiGroups": ["kubewhisper.dev"],
                                "apiVersions": ["v1alpha1"],
                                "resources": ["whisperendpoints"],
                                "operations": ["CREATE", "UPDATE"],
                            }
                        ],
                    }
                ],
            }
        )
        # serving: a spec the webhook refuses is refused (an unserved webhook fails closed with another message)
        wait_for(
            lambda: _refused_by_webhook(api)
            if proc.poll() is None
            else pytest.fail((d / "operator.log").read_text()[-3000:]),
            timeout=60,
            what="the webhook serving",
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


def _refused_by_webhook(api) -> bool:
    """A server-side dry run of a spec the webhook refuses: True once the operator's webhook answers."""
    body = {
        "apiVersion": "kubewhisper.dev/v1alpha1",
        "kind": "WhisperEndpoint",
        "metadata": {"name": "probe-webhook", "namespace": "default"},
        "spec": {"model": "m", "dtype": "bfloat16", "nodeSelector": {"pool": "t4"}},
    }
    try:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "kubewhisper.dev", "v1alpha1", "default", "whisperendpoints", body, dry_run="All"
        )
    except ApiException as e:
        return "UnsupportedDtype" in (e.body or "")
    return False


def test_metadata_updates_and_deletion_pass_after_the_hardware_changed(api, webhook_operator, namespace):
    """Issue 9, point 7: once the pool's GPUs changed under an admitted endpoint, updates that leave the spec alone
    (labels, kopf's finalizer) and the deletion itself must still go through; a spec change is still checked."""
    core = client.CoreV1Api(api)
    gpu = "nvidia.com/gpu"
    h100 = {f"{gpu}.product": "NVIDIA-H100-80GB-HBM3", f"{gpu}.compute.major": "9", f"{gpu}.compute.minor": "0"}
    cap = {"cpu": "8", "memory": "64Gi", "pods": "110", gpu: "1"}
    core.create_node(
        {
            "metadata": {
                "name": "webhook-gpu-1",
                "labels": {"pool": "webhook-pool", "kubernetes.io/arch": "amd64", **h100},
            },
            "status": {"capacity": cap, "allocatable": cap},
        }
    )
    custom = client.CustomObjectsApi(api)
    args = ("kubewhisper.dev", "v1alpha1", namespace, "whisperendpoints")
    try:
        spec = {"model": "openai/whisper-large-v3", "dtype": "bfloat16", "nodeSelector": {"pool": "webhook-pool"}}
        create_endpoint(api, namespace, "ep", spec)
        # the pool's node becomes a T4 (relabelled, as a node group replaced by another GPU type would be)
        t4 = {f"{gpu}.product": "Tesla-T4", f"{gpu}.compute.major": "7", f"{gpu}.compute.minor": "5"}
        core.patch_node("webhook-gpu-1", {"metadata": {"labels": t4}})

        attempts = iter(range(1000))

        def spec_change_refused():
            # each try a different spec (an admitted one is simply the new spec; nothing to undo)
            env = [{"name": "ATTEMPT", "value": str(next(attempts))}]
            try:
                custom.patch_namespaced_custom_object(*args, "ep", {"spec": {"env": env}})
            except ApiException as e:
                return "UnsupportedDtype" in (e.body or "")
            return False

        wait_for(spec_change_refused, timeout=30, what="the webhook seeing the T4")
        custom.patch_namespaced_custom_object(*args, "ep", {"metadata": {"labels": {"team": "speech"}}})
        assert get_endpoint(api, namespace, "ep")["metadata"]["labels"]["team"] == "speech"
        custom.delete_namespaced_custom_object(*args, "ep", propagation_policy="Foreground")

        def gone():
            try:
                get_endpoint(api, namespace, "ep")
                return False
            except ApiException as e:
                return e.status == 404

        wait_for(gone, timeout=60, what="the endpoint deleted (finalizers removed through the webhook)")
    finally:
        core.delete_node("webhook-gpu-1")
