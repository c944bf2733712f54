"""The Helm chart, rendered offline: lint, the values schema, Kubernetes schemas (1.20 and 1.28), golden fields."""

from __future__ import annotations

import json
import re

import jsonschema
import kubernetes_validate
import pytest
import yaml

from .conftest import CHART, ROOT, dockerfile, find

pytestmark = [
    pytest.mark.chart,  # helm template / kubectl from scripts/helm.sh
    pytest.mark.filterwarnings("ignore:jsonschema.RefResolver is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The metaschema specified by:DeprecationWarning"),
]

# Everything switched on and away from its default (the webhook Secret and namespaces are names only here).
FULL = {
    "fullnameOverride": "whisper-op",
    "commonLabels": {"team": "speech"},
    "operator": {
        "image": {
            "repository": "registry.example.com/kw/operator",
            "digest": "sha256:" + "a" * 64,
            "pullPolicy": "Always",
        },
        "imagePullSecrets": ["regcred"],
        "logLevel": "DEBUG",
        "watchNamespaces": ["team-a", "team-b"],
        "resyncSeconds": 10,
        "mixedPoolPolicy": "SafestCommon",
        "healthPort": 9000,
        "leaderElection": {"enabled": True, "leaseDurationSeconds": 20},
        "gpuProbe": {"enabled": False, "timeoutSeconds": 60, "image": "registry.example.com/kw/probe:1"},
        "runAsUser": 2000,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"a": "b"},
        "podLabels": {"c": "d"},
        "extraEnv": [{"name": "KUBEWHISPER_PROBE_ENABLED", "value": "false"}],
    },
    "inference": {
        "image": {"repository": "registry.example.com/kw/inference", "tag": "0.1.0-cuda"},
        "cpuImage": {"repository": "registry.example.com/kw/inference", "digest": "sha256:" + "b" * 64},
        "startupProbeSeconds": 900,
        "terminationGracePeriodSeconds": 30,
    },
    "serviceAccount": {"name": "kw-operator", "annotations": {"iam": "role"}},
    "webhook": {"enabled": True, "port": 8443, "tlsSecretName": "kw-webhook-tls", "failurePolicy": "Ignore"},
    "networkPolicy": {"enabled": True, "apiServerPorts": [443]},
    "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
    "endpoints": [
        {
            "name": "whisper-t4",
            "namespace": "team-a",
            "labels": {"tier": "gold"},
            "spec": {"model": "openai/whisper-large-v3", "nodeSelector": {"pool": "t4"}, "service": {"port": 8000}},
        },
        {
            "name": "whisper-h100",
            "namespace": "team-b",
            "spec": {
                "model": "openai/whisper-large-v3",
                "gpu": {"count": 1, "product": "H100"},
                "timestamps": "segments",
            },
        },
    ],
    "tests": {"apiKeySecretRef": {"name": "whisper-api-key", "key": "api-key"}, "timeoutSeconds": 60},
}
SM_API = ("--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
CRD = yaml.safe_load((ROOT / "crds/whisperendpoints.yaml").read_text())


def crd_validator() -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def test_chart_crd_is_the_top_level_crd_byte_for_byte():
    assert (CHART / "crds/whisperendpoints.yaml").read_bytes() == (ROOT / "crds/whisperendpoints.yaml").read_bytes(), (
        "charts/kubewhisper/crds/whisperendpoints.yaml differs from crds/whisperendpoints.yaml: run scripts/sync-crd.sh"
    )


@pytest.mark.parametrize("values", [{}, {**FULL, "serviceMonitor": {"enabled": False}}], ids=["default", "full"])
def test_helm_lint_strict(helm, values, tmp_path):
    vf = tmp_path / "values.yaml"  # (helm lint has no --api-versions: the ServiceMonitor is rendered below)
    vf.write_text(yaml.safe_dump(values))
    out = helm.helm("lint", "--strict", str(CHART), "-f", str(vf))
    assert "0 chart(s) failed" in out.stdout


def test_every_value_is_documented_and_typed():
    """Each key of values.yaml has a comment right above it (or above an enclosing map) and a schema entry."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented, path, documented = [], [], []
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z][\w]*):", line)
        if not m:
            continue
        depth = len(m.group(1)) // 2
        path, documented = path[:depth] + [m.group(2)], documented[:depth]
        documented.append(lines[i - 1].lstrip().startswith("#") or any(documented))
        if not documented[-1] and line.split(":", 1)[1].strip():  # a leaf nobody explains
            undocumented.append(".".join(path))
        node = schema
        for key in path:
            if "$ref" in node:
                node = schema["definitions"][node["$ref"].split("/")[-1]]
            props = node.get("properties") or {}
            if key not in props and isinstance(node.get("additionalProperties"), dict):
                break  # an entry of a free-form map (e.g. resources.requests.cpu)
            assert key in props, f"values.schema.json has no entry for {'.'.join(path)}"
            node = props[key]
    assert not undocumented, f"values without a comment: {undocumented}"


@pytest.mark.parametrize("kube", ["1.20.0", "1.28.0"])
@pytest.mark.parametrize("values", [{}, FULL], ids=["default", "full"])
def test_rendered_objects_validate_against_kubernetes_schemas(helm, values, kube):
    docs = helm.render(values, "--kube-version", kube, *SM_API)
    kinds = sorted({d["kind"] for d in docs})
    checked = 0
    for doc in docs:
        if doc["kind"] == "WhisperEndpoint":
            errors = [e.message for e in crd_validator().iter_errors(doc)]
            assert not errors, f"{doc['metadata']['name']}: {errors}"
        elif doc["kind"] == "ServiceMonitor":
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"  # not a Kubernetes schema; fields golden-tested
        else:
            kubernetes_validate.validate(doc, kube, strict=True)  # raises ValidationError with the path
        checked += 1
    assert checked == len(docs) and {"Deployment", "ServiceAccount", "ClusterRole"} <= set(kinds)


def test_default_render_golden(helm):
    docs = helm.render({}, "--kube-version", "1.20.2")
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted(
        [
            ("ServiceAccount", "kw-kubewhisper"),
            ("ClusterRole", "kw-kubewhisper-operator-cluster"),
            ("ClusterRoleBinding", "kw-kubewhisper-operator-cluster"),
            ("ClusterRole", "kw-kubewhisper-operator-namespaced"),
            ("ClusterRoleBinding", "kw-kubewhisper-operator-namespaced"),
            ("Role", "kw-kubewhisper-operator-leader"),
            ("RoleBinding", "kw-kubewhisper-operator-leader"),
            ("Role", "kw-kubewhisper-operator-probe"),
            ("RoleBinding", "kw-kubewhisper-operator-probe"),
            ("Role", "kw-kubewhisper-operator-owner"),
            ("RoleBinding", "kw-kubewhisper-operator-owner"),
            ("ClusterRole", "kw-kubewhisper-edit"),
            ("ClusterRole", "kw-kubewhisper-view"),
            ("Deployment", "kw-kubewhisper-operator"),
            ("Service", "kw-kubewhisper-operator"),
            ("Pod", "kw-kubewhisper-test-operator"),
        ]
    )  # no transcription test pod without an endpoint, no webhook, ServiceMonitor or NetworkPolicy by default
    dep = find(docs, "Deployment")
    spec = dep["spec"]
    assert dep["metadata"]["namespace"] == "kubewhisper"
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "kw-kubewhisper"
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (c,) = pod["containers"]
    assert c["image"] == "ghcr.io/kubewhisper/kubewhisper-operator:0.1.0"
    assert c["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    # the liveness probe calls the endpoint kopf serves (--liveness=...)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    # Ready once kopf serves /healthz, i.e. after the operator's startup handler (client, Lease, webhook server)
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["ports"] == [{"name": "health", "containerPort": 8081, "protocol": "TCP"}]
    assert "--liveness=http://0.0.0.0:8081/healthz" in c["command"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    assert env["KUBEWHISPER_DEFAULT_IMAGE"] == "ghcr.io/kubewhisper/kubewhisper-inference:0.1.0"
    assert env["KUBEWHISPER_DEFAULT_CPU_IMAGE"] == "ghcr.io/kubewhisper/kubewhisper-inference:0.1.0-cpu"
    # the owner of the Lease, the probe ConfigMap and probe Jobs: helm uninstall takes them along
    assert env["KUBEWHISPER_OWNER_DEPLOYMENT"] == dep["metadata"]["name"]
    svc = find(docs, "Service", "kw-kubewhisper-operator")
    assert svc["spec"]["ports"] == [{"name": "health", "port": 8081, "targetPort": "health", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert env["KUBEWHISPER_LEASE_NAME"] == "kw-kubewhisper-operator"
    assert env["KUBEWHISPER_LEASE_NAMESPACE"] == "kubewhisper" and env["KUBEWHISPER_PROBE_NAMESPACE"] == "kubewhisper"
    assert env["KUBEWHISPER_IDENTITY"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert not any(k.startswith("KUBEWHISPER_WEBHOOK") for k in env)


def test_operator_settings_accept_the_rendered_env(helm):
    """Every KUBEWHISPER_* the chart sets is a real operator setting, and the operator's own validation accepts it."""
    from whisper_operator.config import OperatorSettings

    for values in ({}, FULL):
        dep = find(helm.render(values, *SM_API), "Deployment")
        env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
        fields = {f"KUBEWHISPER_{k.upper()}" for k in OperatorSettings.model_fields}
        assert set(env) <= fields, f"unknown operator settings: {set(env) - fields}"
        s = OperatorSettings(**{k[len("KUBEWHISPER_") :].lower(): v for k, v in env.items()}).check()
        assert s.default_image == env["KUBEWHISPER_DEFAULT_IMAGE"]


def test_full_render_golden(helm):
    docs = helm.render(FULL, *SM_API)
    dep = find(docs, "Deployment", "whisper-op-operator")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "registry.example.com/kw/operator@sha256:" + "a" * 64
    assert c["command"][-3:] == ["--namespace=team-a", "--namespace=team-b", "--debug"]
    assert "--all-namespaces" not in c["command"]
    assert "--liveness=http://0.0.0.0:9000/healthz" in c["command"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["KUBEWHISPER_DEFAULT_IMAGE"] == "registry.example.com/kw/inference:0.1.0-cuda"
    assert env["KUBEWHISPER_DEFAULT_CPU_IMAGE"] == "registry.example.com/kw/inference@sha256:" + "b" * 64
    assert env["KUBEWHISPER_WEBHOOK_HOST"] == "whisper-op-webhook.kubewhisper.svc"
    assert env["KUBEWHISPER_WEBHOOK_PORT"] == "8443"
    assert pod["securityContext"]["runAsUser"] == 2000 and pod["serviceAccountName"] == "kw-operator"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert {"name": "webhook-tls", "secret": {"secretName": "kw-webhook-tls"}} in pod["volumes"]
    svc = find(docs, "Service", "whisper-op-webhook")
    assert svc["spec"]["ports"][0]["port"] == 8443 and svc["spec"]["ports"][0]["targetPort"] == "webhook"
    np = find(docs, "NetworkPolicy")
    assert [p["port"] for p in np["spec"]["ingress"][0]["ports"]] == [9000, 8443]
    assert [p["port"] for p in np["spec"]["egress"][1]["ports"]] == [443]
    sm = find(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    eps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "WhisperEndpoint"}
    assert eps["whisper-t4"]["metadata"]["namespace"] == "team-a"
    assert eps["whisper-t4"]["metadata"]["labels"]["tier"] == "gold"
    assert eps["whisper-h100"]["spec"]["gpu"] == {"count": 1, "product": "H100"}
    for d in docs:
        assert d["metadata"]["labels"]["team"] == "speech"
    test_pod = find(docs, "Pod", "whisper-op-test-transcription")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    tenv = {e["name"]: e for e in test_pod["spec"]["containers"][0]["env"]}
    # the first endpoint, its namespace and its service port
    assert tenv["TRANSCRIBE_URL"]["value"] == "http://whisper-t4.team-a.svc.cluster.local:8000/v1/audio/transcriptions"
    assert tenv["API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "whisper-api-key", "key": "api-key"}}


def _rules(doc: dict) -> set[tuple]:
    return {
        (g, r, v, tuple(rule.get("resourceNames", ())))
        for rule in doc["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def test_rbac_is_exactly_what_the_operator_uses(helm):
    docs = helm.render({})
    cluster = _rules(find(docs, "ClusterRole", "kw-kubewhisper-operator-cluster"))
    namespaced = _rules(find(docs, "ClusterRole", "kw-kubewhisper-operator-namespaced"))
    leader = _rules(find(docs, "Role", "kw-kubewhisper-operator-leader"))
    probe = _rules(find(docs, "Role", "kw-kubewhisper-operator-probe"))
    assert cluster == {
        ("", "nodes", "list", ()),
        ("", "nodes", "watch", ()),
        ("kubewhisper.dev", "whisperendpoints", "list", ()),
        ("kubewhisper.dev", "whisperendpoints", "watch", ()),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list", ()),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch", ()),
    }
    assert namespaced == {
        # patch: kopf adds and removes its finalizer (the resync timer needs one)
        *(("kubewhisper.dev", "whisperendpoints", v, ()) for v in ("get", "list", "watch", "patch")),
        ("kubewhisper.dev", "whisperendpoints/status", "patch", ()),
        ("kubewhisper.dev", "whisperendpoints/finalizers", "update", ()),
        *(("apps", "deployments", v, ()) for v in ("get", "list", "watch", "create", "patch")),
        ("apps", "deployments/scale", "patch", ()),
        *(("", "services", v, ()) for v in ("get", "list", "watch", "create", "patch")),
        *(("policy", "poddisruptionbudgets", v, ()) for v in ("get", "create", "patch", "delete")),
        *(("", "events", v, ()) for v in ("get", "create", "patch")),
    }
    # the NVML probe lives in the operator's own namespace only (issue 9, point 14)
    assert probe == {
        *(("batch", "jobs", v, ()) for v in ("get", "create", "delete")),
        ("", "pods", "list", ()),
        ("", "configmaps", "create", ()),
        *(("", "configmaps", v, ("kubewhisper-gpu-probes",)) for v in ("get", "patch")),
    }
    assert leader == {
        ("coordination.k8s.io", "leases", "create", ()),
        ("coordination.k8s.io", "leases", "get", ("kw-kubewhisper-operator",)),
        ("coordination.k8s.io", "leases", "update", ("kw-kubewhisper-operator",)),
    }
    owner = _rules(find(docs, "Role", "kw-kubewhisper-operator-owner"))
    # its own Deployment's uid, for the ownerReferences of the Lease, the probe ConfigMap and probe Jobs
    assert owner == {("apps", "deployments", "get", ("kw-kubewhisper-operator",))}
    everything = cluster | namespaced | leader | probe | owner
    assert not any("*" in (g, r, v) for g, r, v, _ in everything)
    assert not any(r in ("secrets", "pods/exec", "pods/attach") for _, r, _, _ in everything)
    assert not any(r == "configmaps" and v != "create" and not names for _, r, v, names in everything)
    assert not any(v in ("deletecollection", "escalate", "bind", "impersonate") for _, _, v, _ in everything)
    # deletes: only the probe's own finished Jobs and a PDB an endpoint scaled down to one pod no longer needs
    assert {(r, v) for _, r, v, _ in everything if v == "delete"} == {
        ("jobs", "delete"),
        ("poddisruptionbudgets", "delete"),
    }
    assert not any("webhookconfigurations" in r for _, r, _, _ in everything)


def test_aggregated_roles_let_namespace_users_manage_endpoints(helm):
    docs = helm.render({})
    edit, view = find(docs, "ClusterRole", "kw-kubewhisper-edit"), find(docs, "ClusterRole", "kw-kubewhisper-view")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert ("kubewhisper.dev", "whisperendpoints", "create", ()) in _rules(edit)
    assert {v for _, r, v, _ in _rules(view)} == {"get", "list", "watch"}
    assert not [
        d
        for d in helm.render({"rbac": {"aggregateToDefaultRoles": False}})
        if d["metadata"]["name"].endswith(("-edit", "-view"))
    ]


def test_rbac_follows_watch_namespaces_and_webhook(helm):
    docs = helm.render(FULL, *SM_API)
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and d["roleRef"]["kind"] == "ClusterRole"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["roleRef"]["name"] == "whisper-op-operator-namespaced" for b in bindings)
    assert all(
        b["subjects"] == [{"kind": "ServiceAccount", "name": "kw-operator", "namespace": "kubewhisper"}]
        for b in bindings
    )
    assert not [
        d
        for d in docs
        if d["kind"] == "ClusterRoleBinding" and d["roleRef"]["name"] == "whisper-op-operator-namespaced"
    ]
    cluster = _rules(find(docs, "ClusterRole", "whisper-op-operator-cluster"))
    # the webhook configuration is the chart's: the operator may not create or change any
    assert not any("webhookconfigurations" in r for _, r, _, _ in cluster)
    vwc = find(docs, "ValidatingWebhookConfiguration")
    (hook,) = vwc["webhooks"]
    assert hook["clientConfig"]["service"] == {
        "namespace": "kubewhisper",
        "name": "whisper-op-webhook",
        "path": "/validate-endpoint",
        "port": 8443,
    }
    assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"] and hook["failurePolicy"] == "Ignore"
    # a Secret of the user's: the chart generates none
    assert not [d for d in docs if d["kind"] == "Secret"]
    no_leader = helm.render({"operator": {"leaderElection": {"enabled": False}}, "rbac": {"create": True}})
    assert not [
        d for d in no_leader if d["kind"] in ("Role", "RoleBinding") and d["metadata"]["name"].endswith("-leader")
    ]
    no_probe = helm.render({"operator": {"gpuProbe": {"enabled": False}}})
    assert not [d for d in no_probe if d["metadata"]["name"].endswith("-operator-probe")]
    assert not [d for d in helm.render({"rbac": {"create": False}}) if "Role" in d["kind"]]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"operator": {"logLevel": "LOUD"}}, 'operator.logLevel must be one of the following: "DEBUG", "INFO"'),
        ({"operator": {"replicas": 2}}, "operator.replicas: Must be less than or equal to 1"),
        ({"operator": {"runAsUser": 0}}, "operator.runAsUser: Must be greater than or equal to 1"),
        ({"operator": {"image": {"pullPolicy": "Sometimes"}}}, "operator.image.pullPolicy must be one of"),
        ({"operator": {"image": {"digest": "md5:abc"}}}, "operator.image.digest: Does not match pattern"),
        ({"operator": {"watchNamespaces": ["Team_A"]}}, "operator.watchNamespaces.0: Does not match pattern"),
        ({"operator": {"replicsa": 1}}, "operator: Additional property replicsa is not allowed"),
        ({"operator": {"healthPort": 70000}}, "operator.healthPort: Must be less than or equal to 65535"),
        (
            {"inference": {"startupProbeSeconds": 10}},
            "inference.startupProbeSeconds: Must be greater than or equal to 60",
        ),
        ({"endpoints": [{"name": "x"}]}, "endpoints.0: spec is required"),
        ({"endpoints": [{"name": "x", "spec": {"model": ""}}]}, "endpoints.0.spec.model: String length must be"),
        ({"serviceMonitor": {"interval": "often"}}, "serviceMonitor.interval: Does not match pattern"),
        ({"webhook": {"failurePolicy": "Sometimes"}}, "webhook.failurePolicy must be one of the following"),
        ({"serviceMonitor": {"enabled": True}}, "no monitoring.coreos.com/v1 ServiceMonitor API"),
        ({"serviceAccount": {"create": False}}, "serviceAccount.name is required when serviceAccount.create is false"),
    ],
)
def test_bad_values_fail_with_a_clear_message(helm, values, message):
    p = helm.template(values, check=False)
    assert p.returncode != 0, p.stdout[:500]
    assert message in p.stderr, p.stderr


def test_kube_version_floor_and_capability_gating(helm):
    p = helm.template({}, "--kube-version", "1.19.0", check=False)
    assert p.returncode != 0 and "incompatible with Kubernetes v1.19.0" in p.stderr
    assert not [
        d for d in helm.render({"serviceMonitor": {"enabled": False}}, *SM_API) if d["kind"] == "ServiceMonitor"
    ]
    assert find(helm.render({"serviceMonitor": {"enabled": True}}, *SM_API), "ServiceMonitor")


def test_chart_command_is_the_operator_image_entrypoint(helm):
    """With default values the chart runs exactly the image's ENTRYPOINT + CMD, as its numeric USER."""
    df = dockerfile("operator")
    entry = json.loads(df["ENTRYPOINT"][-1]) + json.loads(df["CMD"][-1])
    c = find(helm.render({}), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == entry
    uid = df["USER"][-1].split(":")[0]
    assert uid.isdigit() and int(uid) == c["securityContext"]["runAsUser"] != 0
    assert df["EXPOSE"] == ["8081"] and "--liveness=http://0.0.0.0:8081/healthz" in entry


def test_test_pod_only_with_an_endpoint(helm):
    assert [d["metadata"]["name"] for d in helm.render({}) if d["kind"] == "Pod"] == ["kw-kubewhisper-test-operator"]
    pod = find(
        helm.render({"tests": {"endpoint": "whisper", "namespace": "speech"}}),
        "Pod",
        "kw-kubewhisper-test-transcription",
    )
    (c,) = pod["spec"]["containers"]
    assert c["command"] == ["python3", "-c"] and "urllib.request" in c["args"][0]
    assert {"name": "TRANSCRIBE_URL", "value": "http://whisper.speech.svc.cluster.local/v1/audio/transcriptions"} in c[
        "env"
    ]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_operator_test_pod_reads_healthz_through_the_service_and_wants_the_lease(helm):
    docs = helm.render({})
    pod = find(docs, "Pod", "kw-kubewhisper-test-operator")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    assert c["image"] == find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["HEALTHZ_URL"] == "http://kw-kubewhisper-operator.kubewhisper.svc.cluster.local:8081/healthz"
    assert env["WANT_LEADER"] == "1" and "leader" in c["args"][0]
    assert c["resources"]["limits"] == {"cpu": "200m", "memory": "64Mi"}
    no_leader = find(helm.render({"operator": {"leaderElection": {"enabled": False}}}), "Pod")
    assert {"name": "WANT_LEADER", "value": "0"} in no_leader["spec"]["containers"][0]["env"]
    # no operator pod in the cluster (it runs elsewhere): nothing to test there
    assert not [d for d in helm.render({"operator": {"replicas": 0}}) if d["kind"] == "Pod"]


def test_webhook_without_a_secret_gets_a_generated_ca_and_serving_cert(helm, tmp_path):
    """No tlsSecretName: a CA and a certificate for the webhook Service's names, the caBundle from that CA."""
    import base64
    import subprocess

    docs = helm.render({"webhook": {"enabled": True}})
    secret = find(docs, "Secret", "kw-kubewhisper-webhook-tls")
    assert secret["type"] == "kubernetes.io/tls"
    files = {}
    for key in ("ca.crt", "tls.crt", "tls.key"):
        files[key] = tmp_path / key
        files[key].write_bytes(base64.b64decode(secret["data"][key]))
    (hook,) = find(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"] and hook["failurePolicy"] == "Fail"
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(files["ca.crt"]), str(files["tls.crt"])], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stderr
    san = subprocess.run(
        ["openssl", "x509", "-in", str(files["tls.crt"]), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:kw-kubewhisper-webhook.kubewhisper.svc" in san
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "webhook-tls", "secret": {"secretName": "kw-kubewhisper-webhook-tls"}} in pod["volumes"]
