"""Server-side printing: the ``meta.k8s.io/v1`` Table that ``kubectl get`` asks for.

Columns follow the real server's printers (READY / UP-TO-DATE / AVAILABLE for deployments, READY /
STATUS / RESTARTS for pods, ...); ages are rendered server-side like Kubernetes' ``HumanDuration``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from autoscaler.sandbox import conversion
from autoscaler.sandbox.resources import ResourceType
from autoscaler.sandbox.selectors import from_label_selector_object

Obj = dict[str, Any]
Column = tuple[str, str, str, int]  # name, type, description, priority

NAME: Column = ("Name", "string", "Name must be unique within a namespace.", 0)
AGE: Column = ("Age", "string", "CreationTimestamp is a timestamp representing the server time when this "
               "object was created.", 0)
CREATED_AT: Column = ("Created At", "date", "Time at which the object was created.", 0)
ROLE_REF: Column = ("Role", "string", "Role to which the binding refers.", 0)
BINDING_SUBJECTS: list[Column] = [("Users", "string", "Users in the binding.", 1),
                                  ("Groups", "string", "Groups in the binding.", 1),
                                  ("ServiceAccounts", "string", "ServiceAccounts in the binding.", 1)]

COLUMNS: dict[str, list[Column]] = {
    "Deployment": [NAME, ("Ready", "string", "Number of the pod with ready state", 0),
                   ("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that "
                    "have the desired template spec.", 0),
                   ("Available", "string", "Total number of available pods (ready for at least minReadySeconds) "
                    "targeted by this deployment.", 0), AGE,
                   ("Containers", "string", "Names of each container in the template.", 1),
                   ("Images", "string", "Images referenced by each container in the template.", 1),
                   ("Selector", "string", "Label selector for pods.", 1)],
    "ReplicaSet": [NAME, ("Desired", "integer", "Number of desired pods.", 0),
                   ("Current", "integer", "Number of actual replicas.", 0),
                   ("Ready", "integer", "The number of ready replicas for this replica set.", 0), AGE,
                   ("Containers", "string", "Names of each container in the template.", 1),
                   ("Images", "string", "Images referenced by each container in the template.", 1),
                   ("Selector", "string", "Label selector for pods.", 1)],
    "Pod": [NAME, ("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", 0),
            ("Status", "string", "The aggregate status of the containers in this pod.", 0),
            ("Restarts", "string", "The number of times the containers in this pod have been restarted.", 0),
            AGE, ("IP", "string", "IP address allocated to the pod.", 1),
            ("Node", "string", "Name of the node the pod is assigned to.", 1),
            ("Nominated Node", "string", "Nominated node name, if any.", 1),
            ("Readiness Gates", "string", "Pod readiness gates.", 1)],
    "HorizontalPodAutoscaler": [
        NAME, ("Reference", "string", "scaleTargetRef points to the target resource to scale, and is used to the pods "
               "for which metrics should be collected, as well as to actually change the replica count.", 0),
        ("Targets", "string", "metrics contains the specifications for which to use to calculate the desired "
         "replica count (the maximum replica count across all metrics will be used).", 0),
        ("MinPods", "string", "minReplicas is the lower limit for the number of replicas to which the autoscaler "
         "can scale down.", 0),
        ("MaxPods", "string", "maxReplicas is the upper limit for the number of replicas to which the autoscaler "
         "can scale up.", 0),
        ("Replicas", "string", "currentReplicas is current number of replicas of pods managed by this autoscaler, "
         "as last seen by the autoscaler.", 0), AGE],
    "Namespace": [NAME, ("Status", "string", "The status of the namespace", 0), AGE],
    "ServiceAccount": [NAME, ("Secrets", "string", "Secrets is a list of the secrets in the same namespace that "
                              "pods running using this ServiceAccount are allowed to use.", 0), AGE],
    "Service": [NAME, ("Type", "string", "The type of service.", 0),
                ("Cluster-IP", "string", "The cluster IP of the service.", 0),
                ("External-IP", "string", "The external IP of the service.", 0),
                ("Port(s)", "string", "The ports of the service.", 0), AGE,
                ("Selector", "string", "Route service traffic to pods with label keys and values matching this "
                 "selector.", 1)],
    "PodDisruptionBudget": [
        NAME, ("Min Available", "string", "The minimum number of pods that must be available.", 0),
        ("Max Unavailable", "string", "The maximum number of pods that may be unavailable.", 0),
        ("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time.", 0),
        AGE],
    "Role": [NAME, CREATED_AT],
    "ClusterRole": [NAME, CREATED_AT],
    "RoleBinding": [NAME, ROLE_REF, AGE, *BINDING_SUBJECTS],
    "ClusterRoleBinding": [NAME, ROLE_REF, AGE, *BINDING_SUBJECTS],
    "ConfigMap": [NAME, ("Data", "string", "Number of keys in the map", 0), AGE],
    "Secret": [NAME, ("Type", "string", "Used to facilitate programmatic handling of secret data. More info: "
                      "https://kubernetes.io/docs/concepts/configuration/secret/#secret-types", 0),
               ("Data", "string", "Data contains the secret data. Each key must consist of alphanumeric characters, "
                "'-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing "
                "the arbitrary (possibly non-string) data value here. Described in "
                "https://tools.ietf.org/html/rfc4648#section-4", 0), AGE],
    "Lease": [NAME, ("Holder", "string", "The holder of the lease", 0), AGE],
    "Event": [("Last Seen", "string", "Time when last this event was observed.", 0),
              ("Type", "string", "Type of this event (Normal, Warning).", 0),
              ("Reason", "string", "Short, machine understandable string that gives the reason for the "
               "transition into the object's current status.", 0),
              ("Object", "string", "The object this event is about.", 0),
              ("Message", "string", "A human-readable description of the status of this operation.", 0)],
}


def human_duration(seconds: float) -> str:
    """Kubernetes' duration.HumanDuration."""
    if seconds < -1:
        return "<invalid>"
    s = max(int(seconds), 0)
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


def age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    try:
        then = datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - then).total_seconds())


def _containers(obj: Obj) -> list[Obj]:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [c for c in spec.get("containers") or [] if isinstance(c, dict)]


def _selector(obj: Obj) -> str:
    try:
        return str(from_label_selector_object((obj.get("spec") or {}).get("selector"))) or "<none>"
    except ValueError:
        return "<invalid>"


def _selector_map(selector: Any) -> str:
    if not isinstance(selector, dict) or not selector:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def _service_ports(spec: Obj) -> str:
    ports = []
    for p in spec.get("ports") or []:
        if not isinstance(p, dict):
            continue
        node = f":{p['nodePort']}" if p.get("nodePort") else ""
        ports.append(f"{p.get('port', '')}{node}/{p.get('protocol') or 'TCP'}")
    return ",".join(ports) or "<none>"


def _external_ip(svc: Obj) -> str:
    """The EXTERNAL-IP column (getServiceExternalIP)."""
    spec = svc.get("spec") or {}
    stype = spec.get("type") or "ClusterIP"
    external = [str(ip) for ip in spec.get("externalIPs") or []]
    if stype == "ExternalName":
        return str(spec.get("externalName") or "<none>")
    if stype == "LoadBalancer":
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ips = external + [str(i.get("ip") or i.get("hostname") or "") for i in ingress if isinstance(i, dict)]
        return ",".join(ips) or "<pending>"
    return ",".join(external) or "<none>"


def _pod_status(pod: Obj) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return str(waiting["reason"])
    if status.get("phase") == "Pending" and status.get("containerStatuses"):
        return "ContainerCreating"
    return str(status.get("reason") or status.get("phase") or "Unknown")


def _hpa_targets(specs: list[Obj], statuses: list[Obj]) -> str:
    """The TARGETS column: ``current/target`` per metric, at most two (formatHPAMetrics)."""
    if not specs:
        return "<none>"
    shown: list[str] = []
    for i, spec in enumerate(specs):
        mtype = str(spec.get("type", ""))
        field = mtype[:1].lower() + mtype[1:]
        source = spec.get(field) or {}
        target = source.get("target") or {}
        status = statuses[i] if i < len(statuses) else {}
        used = ((status.get(field) or {}) if status.get("type") == mtype else {}).get("current") or {}
        if mtype in ("Resource", "ContainerResource"):
            if target.get("averageValue") is not None:
                cur, want = used.get("averageValue", "<unknown>"), target["averageValue"]
            else:
                cur = f"{used['averageUtilization']}%" if used.get("averageUtilization") is not None else "<unknown>"
                want = f"{target['averageUtilization']}%" if target.get("averageUtilization") is not None \
                    else "<auto>"
            shown.append(f"{source.get('name', '')}: {cur}/{want}")
        elif mtype == "Pods":
            shown.append(f"{used.get('averageValue', '<unknown>')}/{target.get('averageValue', '')}")
        elif mtype in ("Object", "External"):
            if target.get("averageValue") is not None:
                shown.append(f"{used.get('averageValue', '<unknown>')}/{target['averageValue']} (avg)")
            else:
                shown.append(f"{used.get('value', '<unknown>')}/{target.get('value', '')}")
        else:
            shown.append("<unknown type>")
    more = f" + {len(shown) - 2} more..." if len(shown) > 2 else ""
    return ", ".join(shown[:2]) + more


def cells(rt: ResourceType, obj: Obj) -> list[Any]:
    """One Table row for an object in ``rt``'s external form."""
    meta = obj["metadata"]
    name, created = meta["name"], age(meta.get("creationTimestamp"))
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    kind = rt.kind
    if kind == "Deployment":
        cs = _containers(obj)
        return [name, f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
                status.get("updatedReplicas", 0), status.get("availableReplicas", 0), created,
                ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs), _selector(obj)]
    if kind == "ReplicaSet":
        cs = _containers(obj)
        return [name, spec.get("replicas", 0), status.get("replicas", 0), status.get("readyReplicas", 0), created,
                ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs), _selector(obj)]
    if kind == "Pod":
        statuses = status.get("containerStatuses") or []
        ready = sum(1 for c in statuses if c.get("ready"))
        restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
        return [name, f"{ready}/{len(spec.get('containers') or [])}", _pod_status(obj), str(restarts), created,
                status.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
                status.get("nominatedNodeName") or "<none>", "<none>"]
    if kind == "HorizontalPodAutoscaler":  # printed from the v2 form, whichever version was asked for
        v2 = conversion.to_storage(rt, obj)
        spec, status = v2.get("spec") or {}, v2.get("status") or {}
        ref = spec.get("scaleTargetRef") or {}
        min_pods = str(spec["minReplicas"]) if spec.get("minReplicas") is not None else "<unset>"
        return [name, f"{ref.get('kind', '')}/{ref.get('name', '')}",
                _hpa_targets(spec.get("metrics") or [], status.get("currentMetrics") or []), min_pods,
                spec.get("maxReplicas", 0), status.get("currentReplicas", 0), created]
    if kind == "Namespace":
        return [name, status.get("phase", "Active"), created]
    if kind == "ServiceAccount":
        return [name, len(obj.get("secrets") or []), created]
    if kind == "Service":
        return [name, spec.get("type") or "ClusterIP", spec.get("clusterIP") or "<none>", _external_ip(obj),
                _service_ports(spec), created, _selector_map(spec.get("selector"))]
    if kind == "PodDisruptionBudget":
        min_a, max_u = spec.get("minAvailable"), spec.get("maxUnavailable")
        return [name, "N/A" if min_a is None else str(min_a), "N/A" if max_u is None else str(max_u),
                status.get("disruptionsAllowed", 0), created]
    if kind in ("Role", "ClusterRole"):
        return [name, meta.get("creationTimestamp") or "<unknown>"]
    if kind in ("RoleBinding", "ClusterRoleBinding"):
        ref = obj.get("roleRef") or {}
        subjects = [s for s in obj.get("subjects") or [] if isinstance(s, dict)]

        def of(kind: str) -> str:
            return ", ".join(f"{s['namespace']}/{s.get('name', '')}" if kind == "ServiceAccount" and s.get("namespace")
                             else str(s.get("name", "")) for s in subjects if s.get("kind") == kind)

        return [name, f"{ref.get('kind', '')}/{ref.get('name', '')}", created, of("User"), of("Group"),
                of("ServiceAccount")]
    if kind == "ConfigMap":
        return [name, len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), created]
    if kind == "Secret":
        return [name, obj.get("type", ""), len(obj.get("data") or {}), created]
    if kind == "Lease":
        return [name, spec.get("holderIdentity") or "<none>", created]
    if kind == "Event":
        core = rt.group == ""
        involved = obj.get("involvedObject" if core else "regarding") or {}
        last = (obj.get("lastTimestamp" if core else "deprecatedLastTimestamp") or obj.get("eventTime")
                or meta.get("creationTimestamp"))
        return [age(last), obj.get("type", ""), obj.get("reason", ""),
                f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
                obj.get("message" if core else "note", "")]
    return [name, created]


def column_definitions(rt: ResourceType) -> list[Obj]:
    cols = COLUMNS.get(rt.kind, [NAME, AGE])
    return [{"name": n, "type": t, "format": "name" if n == "Name" else "", "description": d, "priority": p}
            for n, t, d, p in cols]


def row(rt: ResourceType, obj: Obj, include: str) -> Obj:
    r: Obj = {"cells": cells(rt, obj)}
    if include == "Object":
        r["object"] = obj if "kind" in obj else {"kind": rt.kind, "apiVersion": rt.api_version, **obj}
    elif include != "None":
        r["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
    return r


def table(rt: ResourceType, objs: list[Obj], include: str, list_meta: Obj, *, with_columns: bool = True) -> Obj:
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": column_definitions(rt) if with_columns else [],
        "rows": [row(rt, o, include) for o in objs],
    }
