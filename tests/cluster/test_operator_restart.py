"""Operator restarts and the one-active-operator Lease (runs after test_operator_cluster.py's operator stopped)."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from whisper_operator.leader import LeaseElector

from .conftest import OPERATOR_ENV, run_operator
from .helpers import create_endpoint, deployment, env_of, get_endpoint, patch_spec, wait_for

pytestmark = pytest.mark.cluster
MODEL = "openai/whisper-large-v3"


def test_operator_restart_converges(api, gpu_nodes, namespace):
    with run_operator():
        create_endpoint(api, namespace, "ep", {"model": MODEL, "nodeSelector": {"pool": "t4"}})
        first = wait_for(lambda: deployment(api, namespace, "ep"), what="deployment")
    # while no operator runs: the spec changes and the Deployment disappears
    patch_spec(api, namespace, "ep", {"dtype": "float32"})
    client.AppsV1Api(api).delete_namespaced_deployment("ep", namespace)
    create_endpoint(api, namespace, "late", {"model": MODEL, "nodeSelector": {"pool": "h100"}})
    with run_operator():
        dep = wait_for(
            lambda: (d := deployment(api, namespace, "ep")).metadata.uid != first.metadata.uid and d,
            what="deployment recreated after restart",
        )
        assert env_of(dep)["DTYPE"] == "float32"
        assert env_of(wait_for(lambda: deployment(api, namespace, "late"), what="late"))["DTYPE"] == "bfloat16"
        wait_for(
            lambda: get_endpoint(api, namespace, "ep")["status"]["observedGeneration"] == 2, what="observedGeneration 2"
        )


def test_only_one_operator_holds_the_lease(api, gpu_nodes, namespace):
    coord = client.CoordinationV1Api(api)
    duration = float(OPERATOR_ENV["KUBEWHISPER_LEASE_DURATION_SECONDS"])
    other = LeaseElector(coord, "kubewhisper-operator", "default", "other-replica", duration)
    with run_operator():
        wait_for(
            lambda: coord.read_namespaced_lease("kubewhisper-operator", "default").spec.holder_identity
            not in (None, "other-replica"),
            what="operator holds the Lease",
        )
        for _ in range(3):
            assert other.try_acquire_or_renew() is False
            time.sleep(duration / 3)
        # a second replica that is not leader does nothing: create an endpoint; only the leader acts on it
        create_endpoint(api, namespace, "ep", {"model": MODEL, "nodeSelector": {"pool": "t4"}})
        wait_for(lambda: deployment(api, namespace, "ep"), what="leader reconciled")
    # the stopping operator released the Lease: the other replica takes over at once
    assert other.try_acquire_or_renew() is True
    assert coord.read_namespaced_lease("kubewhisper-operator", "default").spec.holder_identity == "other-replica"
    other.release()
    assert coord.read_namespaced_lease("kubewhisper-operator", "default").spec.holder_identity is None
