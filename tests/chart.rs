//! The Helm chart (`charts/prescale`), rendered by a real `helm template` and read back: RBAC is
//! exactly what the operator's API calls need (an option's in its namespaces list only), the
//! admission policy is bound to the operator's ServiceAccount when it may patch pods or
//! autoscalers (what it refuses is tested on the API server: `kube_api.rs`), the pod is hardened, the Deployment's arguments
//! are ones the `prescale` binary accepts (its own argument parser checks them), the sources file
//! parses with the operator's own parser and every secret file it names is in a mounted,
//! read-only volume, and the metrics Service, ServiceMonitor and NetworkPolicy fit together.
//!
//! helm comes from `HELM`, `.tools/bin/helm` (scripts/setup.sh installs it) or `PATH`. Without
//! one the tests say SKIPPED, except in CI (`CI` set), where that is a failure.
//! `scripts/check_chart.sh` adds `helm lint`, `kubernetes-validate --strict` and the refusals.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use prescale::sources::config::parse_sources;
use serde_json::{Value, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn helm() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HELM") {
        return Some(h.into());
    }
    let local = root().join(".tools/bin/helm");
    if local.exists() {
        return Some(local);
    }
    Command::new("helm")
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "helm".into())
}

/// `helm template` with `args`, as JSON documents; `None` (after saying why) without helm.
fn render(args: &[&str]) -> Option<Vec<Value>> {
    let Some(helm) = helm() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "helm not found in CI: scripts/setup.sh installs it into .tools/bin"
        );
        println!("SKIPPED: no helm (set HELM, or run scripts/setup.sh to get .tools/bin/helm)");
        return None;
    };
    let out = Command::new(helm)
        .args([
            "template",
            "prescale",
            "charts/prescale",
            "-n",
            "prescale-system",
        ])
        .args(args)
        .current_dir(root())
        .output()
        .expect("running helm");
    assert!(
        out.status.success(),
        "helm template {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .filter(|v: &Value| !v.is_null())
            .collect(),
    )
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let all = of_kind(docs, kind);
    assert_eq!(all.len(), 1, "expected one {kind}, found {}", all.len());
    all[0]
}

/// The rules as (apiGroups, resources, verbs) strings, for exact comparison.
fn rules(role: &Value) -> Vec<String> {
    role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {} {}", r["apiGroups"], r["resources"], r["verbs"]))
        .collect()
}

/// One rule as [`rules`] prints it.
fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> String {
    format!("{} {} {}", json!(groups), json!(resources), json!(verbs))
}

/// The rules `floorMode.enabled` adds, in order.
fn floor_rules() -> Vec<String> {
    vec![
        rule(&["autoscaling"], &["horizontalpodautoscalers"], &["patch"]),
        rule(&["keda.sh"], &["scaledobjects"], &["get", "patch"]),
        rule(&["prescale.dev"], &["predictivescalers"], &["patch"]),
    ]
}

fn operator_rules(scale: &[(&str, &[&str])]) -> Vec<String> {
    let mut want = vec![
        json!([
            ["prescale.dev"],
            ["predictivescalers"],
            ["get", "list", "watch"]
        ]),
        json!([["prescale.dev"], ["predictivescalers/status"], ["patch"]]),
    ];
    for (group, resources) in scale {
        let r: Vec<String> = resources.iter().map(|r| format!("{r}/scale")).collect();
        want.push(json!([[group], r, ["get", "patch"]]));
    }
    want.push(json!([["events.k8s.io"], ["events"], ["create", "patch"]]));
    want.push(json!([
        ["autoscaling"],
        ["horizontalpodautoscalers"],
        ["get", "list", "watch"]
    ]));
    want.iter()
        .map(|w| format!("{} {} {}", w[0], w[1], w[2]))
        .collect()
}

#[test]
fn default_rbac_is_a_cluster_role_with_exactly_what_the_operator_calls() {
    let Some(docs) = render(&[]) else { return };
    let role = one(&docs, "ClusterRole");
    assert_eq!(
        rules(role),
        operator_rules(&[("apps", &["deployments", "statefulsets", "replicasets"])])
    );
    let binding = one(&docs, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], "prescale");
    assert_eq!(binding["subjects"][0]["namespace"], "prescale-system");
    assert!(of_kind(&docs, "Role").is_empty());
    let all = serde_json::to_string(&docs).unwrap();
    assert!(!all.contains("secrets\""), "no RBAC on secrets");
    assert!(
        !all.contains("leases"),
        "no lease RBAC without leader election"
    );
}

#[test]
fn floor_mode_adds_exactly_the_floor_writes() {
    let Some(docs) = render(&["--set", "floorMode.enabled=true"]) else {
        return;
    };
    let mut want = operator_rules(&[("apps", &["deployments", "statefulsets", "replicasets"])]);
    want.extend(floor_rules());
    assert_eq!(rules(one(&docs, "ClusterRole")), want);
}

#[test]
fn a_learned_lead_time_adds_exactly_a_read_of_the_targets() {
    let Some(docs) = render(&["--set", "learnedLeadTime.enabled=true"]) else {
        return;
    };
    let mut want = operator_rules(&[("apps", &["deployments", "statefulsets", "replicasets"])]);
    let read = json!([
        ["apps"],
        ["deployments", "statefulsets", "replicasets"],
        ["get"]
    ]);
    want.insert(3, format!("{} {} {}", read[0], read[1], read[2]));
    assert_eq!(rules(one(&docs, "ClusterRole")), want);
}

#[test]
fn watched_namespaces_get_roles_and_nothing_cluster_wide() {
    let Some(docs) = render(&["-f", "charts/prescale/ci/full-values.yaml"]) else {
        return;
    };
    assert!(of_kind(&docs, "ClusterRole").is_empty());
    assert!(of_kind(&docs, "ClusterRoleBinding").is_empty());
    // cluster-scoped: only the admission policy (it refuses; it grants nothing)
    let cluster_scoped: Vec<&str> = docs
        .iter()
        .filter(|d| d["metadata"]["namespace"].is_null())
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        cluster_scoped,
        [
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
    let roles = of_kind(&docs, "Role");
    let namespaces: Vec<&str> = roles
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["ai-gateway", "team-b"]);
    // full-values.yaml has a source with allowedNamespaceSelector: the namespaces' labels are read;
    // drainAware (no namespaces list) is in both, floorMode only in ai-gateway and learnedLeadTime
    // only in team-b (their namespaces lists)
    let scale: &[(&str, &[&str])] = &[
        ("apps", &["deployments", "statefulsets"]),
        ("argoproj.io", &["rollouts"]),
    ];
    let mut ai_gateway = operator_rules(scale);
    ai_gateway.insert(4, rule(&[""], &["pods"], &["get", "list", "patch"]));
    ai_gateway.extend(floor_rules());
    ai_gateway.push(rule(&[""], &["namespaces"], &["get"]));
    let mut team_b = operator_rules(scale);
    team_b.insert(
        4,
        rule(&["apps"], &["deployments", "statefulsets"], &["get"]),
    );
    team_b.insert(5, rule(&["argoproj.io"], &["rollouts"], &["get"]));
    team_b.insert(6, rule(&[""], &["pods"], &["get", "list", "patch"]));
    team_b.push(rule(&[""], &["namespaces"], &["get"]));
    assert_eq!(rules(roles[0]), ai_gateway);
    assert_eq!(rules(roles[1]), team_b);
    let bindings = of_kind(&docs, "RoleBinding");
    assert_eq!(bindings.len(), 2);
    for b in bindings {
        assert_eq!(b["roleRef"]["kind"], "Role");
        assert_eq!(b["subjects"][0]["name"], "prescale-operator");
        assert_eq!(b["subjects"][0]["namespace"], "prescale-system");
    }
    let args = container(&docs)["args"].clone();
    assert!(
        args.as_array()
            .unwrap()
            .contains(&json!("--namespaces=ai-gateway,team-b")),
        "{args}"
    );
}

fn container(docs: &[Value]) -> &Value {
    &one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn the_pod_is_hardened_and_probed_on_the_health_endpoints() {
    let Some(docs) = render(&[]) else { return };
    let deploy = one(&docs, "Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(deploy["spec"]["replicas"], 1);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = container(&docs);
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http");
    assert_eq!(c["ports"][0]["name"], "http");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["image"], "ghcr.io/prescale-dev/prescale:0.1.0");
    // the Service for /metrics
    let svc = one(&docs, "Service");
    assert_eq!(svc["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(
        svc["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    assert!(of_kind(&docs, "ServiceMonitor").is_empty());
    assert!(of_kind(&docs, "NetworkPolicy").is_empty());
}

#[test]
fn the_binary_accepts_the_arguments_the_chart_renders() {
    for values in [
        &[][..],
        &["-f", "charts/prescale/ci/full-values.yaml"],
        &[
            "--set",
            "leaderElection.enabled=true",
            "--set",
            "replicaCount=2",
        ],
        &[
            "--set",
            "leaderElection.enabled=true",
            "--set",
            "leaderElection.leaseName=prescale-shard-a",
            "--set-string",
            "selector=!canary",
        ],
    ] {
        let Some(docs) = render(values) else { return };
        let c = container(&docs);
        let args: Vec<String> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(args[0], "run");
        // clap checks every argument (names and values) before it gets to --help
        let out = Command::new(env!("CARGO_BIN_EXE_prescale"))
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "prescale refuses the chart's arguments {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = c["ports"][0]["containerPort"].as_u64().unwrap();
        assert!(args.contains(&format!("--http-addr=0.0.0.0:{port}")));
    }
}

#[test]
fn leader_election_gets_a_lease_role_and_the_pod_its_namespace() {
    let Some(docs) = render(&[
        "--set",
        "leaderElection.enabled=true",
        "--set",
        "replicaCount=2",
    ]) else {
        return;
    };
    let deployment = one(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let c = container(&docs);
    assert!(
        c["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--leader-elect"))
    );
    let env = serde_json::to_string(&c["env"]).unwrap();
    assert!(
        env.contains("POD_NAMESPACE") && env.contains("metadata.namespace"),
        "{env}"
    );
    let roles = of_kind(&docs, "Role");
    let lease_role = roles
        .iter()
        .find(|r| serde_json::to_string(r).unwrap().contains("leases"))
        .expect("a Role on leases");
    assert_eq!(lease_role["metadata"]["namespace"], "prescale-system");
    let rule = &lease_role["rules"][0];
    assert_eq!(rule["apiGroups"], json!(["coordination.k8s.io"]));
    assert_eq!(rule["resources"], json!(["leases"]));
    assert_eq!(
        rule["verbs"],
        json!(["get", "create", "update"]),
        "exactly what the election calls: {rule}"
    );
}

#[test]
fn a_shard_renders_its_selector_and_its_own_lease_name() {
    let Some(docs) = render(&[
        "-f",
        "charts/prescale/ci/full-values.yaml",
        "--set",
        "leaderElection.enabled=true",
        "--set",
        "leaderElection.leaseName=prescale-shard-a",
    ]) else {
        return;
    };
    let args = container(&docs)["args"].clone();
    let args = args.as_array().unwrap();
    assert!(
        args.contains(&json!("--selector=shard in (a,b),!canary")),
        "{args:?}"
    );
    assert!(
        args.contains(&json!("--leader-elect-lease-name=prescale-shard-a")),
        "{args:?}"
    );
    // by default: every scaler, and the Lease prescale-leader (the binary's default)
    let Some(docs) = render(&["--set", "leaderElection.enabled=true"]) else {
        return;
    };
    let args = serde_json::to_string(&container(&docs)["args"]).unwrap();
    assert!(
        !args.contains("--selector") && !args.contains("--leader-elect-lease-name"),
        "{args}"
    );
}

#[test]
fn source_access_renders_into_the_sources_file_and_a_selector_adds_namespace_reads() {
    let Some(docs) = render(&["-f", "charts/prescale/ci/full-values.yaml"]) else {
        return;
    };
    let cm = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["data"].get("sources.yaml").is_some())
        .expect("the sources ConfigMap");
    let text = cm["data"]["sources.yaml"].as_str().unwrap();
    let file = parse_sources(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let by = |n: &str| {
        file.sources
            .iter()
            .find(|s| s.name == n)
            .unwrap()
            .access()
            .unwrap()
    };
    let default = by("default");
    assert!(default.all_namespaces);
    assert_eq!(
        default.enforce_namespace_label.as_deref(),
        Some("namespace")
    );
    assert_eq!(by("mimir-team-a").namespaces, ["ai-gateway"]);
    assert!(!by("mimir-team-a").all_namespaces);
    assert!(by("thanos").needs_labels());
    let victoria = by("victoria");
    assert!(
        !victoria.all_namespaces && victoria.namespaces.is_empty(),
        "closed without an allowlist"
    );
    // the selector needs the namespaces' labels: get, and nothing else, in every watched namespace
    for role in of_kind(&docs, "Role").into_iter().filter(|r| {
        !r["metadata"]["name"]
            .as_str()
            .unwrap()
            .ends_with("leader-election")
    }) {
        let rules = rules(role);
        assert_eq!(
            rules.last().unwrap(),
            "[\"\"] [\"namespaces\"] [\"get\"]",
            "{rules:?}"
        );
    }
    // without a selector, no namespace reads (the default RBAC test checks the exact rules)
    let Some(plain) = render(&["--set", "prometheus.url=http://p:9090"]) else {
        return;
    };
    assert!(
        !serde_json::to_string(&plain)
            .unwrap()
            .contains("\"namespaces\"")
    );
}

/// The sources file the chart renders with `args`.
fn sources_file(args: &[&str]) -> Option<prescale::sources::config::SourcesFile> {
    let docs = render(args)?;
    let cm = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["data"].get("sources.yaml").is_some())
        .expect("the sources ConfigMap");
    let text = cm["data"]["sources.yaml"].as_str().unwrap();
    Some(parse_sources(text).unwrap_or_else(|e| panic!("{e}\n{text}")))
}

#[test]
fn the_default_source_isolates_namespaces_unless_the_admin_turns_it_off() {
    // only prometheus.url, as the README's install line: every namespace, each its own series
    let Some(file) = sources_file(&["--set", "prometheus.url=http://p:9090"]) else {
        return;
    };
    let access = file.sources[0].access().unwrap();
    assert_eq!(file.sources[0].name, "default");
    assert!(access.all_namespaces);
    assert_eq!(
        access.enforce_namespace_label.as_deref(),
        Some("namespace"),
        "the chart's default source confines each scaler to its namespace"
    );
    // the explicit opt-out: open to every namespace, every series, and the NOTES warn
    let Some(open) = sources_file(&[
        "--set",
        "prometheus.url=http://p:9090",
        "--set",
        "prometheus.enforceNamespaceLabel=",
    ]) else {
        return;
    };
    assert_eq!(
        open.sources[0].access().unwrap().enforce_namespace_label,
        None
    );
    let notes = |extra: &[&str]| {
        let helm = helm().expect("helm, found above");
        let out = Command::new(helm)
            .args(["install", "prescale", "charts/prescale", "--dry-run"])
            .args([
                "-n",
                "prescale-system",
                "--set",
                "prometheus.url=http://p:9090",
            ])
            .args(extra)
            .current_dir(root())
            .output()
            .expect("running helm");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text[text.find("NOTES:").expect("NOTES")..].to_string()
    };
    assert!(
        notes(&["--set", "prometheus.enforceNamespaceLabel="])
            .contains("WARNING: the source \"default\" does not isolate namespaces"),
    );
    assert!(!notes(&[]).contains("does not isolate"));
    // another label, as the admin's Prometheus names it
    let Some(other) = sources_file(&[
        "--set",
        "prometheus.url=http://p:9090",
        "--set",
        "prometheus.enforceNamespaceLabel=kubernetes_namespace",
    ]) else {
        return;
    };
    assert_eq!(
        other.sources[0]
            .access()
            .unwrap()
            .enforce_namespace_label
            .as_deref(),
        Some("kubernetes_namespace")
    );
}

#[test]
fn sources_parse_and_every_secret_file_is_a_mounted_key() {
    let Some(docs) = render(&["-f", "charts/prescale/ci/full-values.yaml"]) else {
        return;
    };
    let cm = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["data"].get("sources.yaml").is_some())
        .expect("the sources ConfigMap");
    let text = cm["data"]["sources.yaml"].as_str().unwrap();
    let file = parse_sources(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let names: Vec<&str> = file.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["default", "mimir-team-a", "thanos", "openshift", "victoria"]
    );
    let c = container(&docs);
    let args = c["args"].to_string();
    assert!(args.contains("--sources-file=/etc/prescale/config/sources.yaml"));
    let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    let mounts = c["volumeMounts"].as_array().unwrap();
    let volumes = pod["volumes"].as_array().unwrap();
    // (path, the volume's source) for every file the sources name
    let mut files: Vec<String> = Vec::new();
    for s in &file.sources {
        files.extend(s.bearer_token_file.iter().map(|p| p.display().to_string()));
        files.extend(
            s.basic_auth
                .iter()
                .map(|b| b.password_file.display().to_string()),
        );
        if let Some(tls) = &s.tls {
            for f in [&tls.ca_file, &tls.cert_file, &tls.key_file]
                .into_iter()
                .flatten()
            {
                files.push(f.display().to_string());
            }
        }
    }
    assert_eq!(files.len(), 7, "{files:?}");
    for f in files {
        if f.starts_with("/var/run/secrets/kubernetes.io/serviceaccount/") {
            continue; // the pod's own token, mounted by Kubernetes
        }
        let mount = mounts
            .iter()
            .find(|m| f.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())))
            .unwrap_or_else(|| panic!("{f} is in no volume mount: {mounts:?}"));
        assert_eq!(mount["readOnly"], true, "{mount}");
        let key = &f[mount["mountPath"].as_str().unwrap().len() + 1..];
        let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
        let source = if volume["secret"].is_object() {
            &volume["secret"]
        } else {
            &volume["configMap"]
        };
        let name = source["secretName"]
            .as_str()
            .or(source["name"].as_str())
            .unwrap();
        assert!(
            f.contains(&format!("/{name}/")),
            "{f} is mounted from {name}"
        );
        assert!(
            source["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["key"] == key && i["path"] == key),
            "{f}: key {key} not projected by {volume}"
        );
    }
    // secrets reach the pod only as files
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["valueFrom"]["secretKeyRef"].is_null())
    );
}

#[test]
fn service_monitor_and_network_policy_fit_the_service() {
    let Some(docs) = render(&["-f", "charts/prescale/ci/full-values.yaml"]) else {
        return;
    };
    let svc = one(&docs, "Service");
    let sm = one(&docs, "ServiceMonitor");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&svc["metadata"]["labels"][k], v, "label {k}");
    }
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let np = one(&docs, "NetworkPolicy");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    let ingress = np["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(
        ingress[0]["ports"],
        json!([{"port": "http", "protocol": "TCP"}])
    );
    assert!(ingress[0]["from"][0]["namespaceSelector"].is_object());
    let egress_ports: Vec<Vec<u64>> = np["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["port"].as_u64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        egress_ports,
        [
            vec![53, 53],
            vec![443, 6443],
            vec![9091, 10902, 8428],
            vec![443]
        ]
    );
    assert_eq!(
        np["spec"]["egress"][1]["to"],
        json!([{"ipBlock": {"cidr": "172.18.0.2/32"}}])
    );
}

#[test]
fn the_chart_matches_the_crate() {
    let chart = std::fs::read_to_string(root().join("charts/prescale/Chart.yaml")).unwrap();
    let chart: Value = serde_yaml::from_str(&chart).unwrap();
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_dashboard_is_valid_json_over_the_operators_own_metrics() {
    let Some(docs) = render(&["-f", "charts/prescale/ci/full-values.yaml"]) else {
        return;
    };
    let cm = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|c| {
            c["metadata"]["name"]
                .as_str()
                .unwrap()
                .ends_with("-dashboard")
        })
        .expect("the dashboard ConfigMap");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dash: Value = serde_json::from_str(cm["data"]["prescale.json"].as_str().unwrap())
        .expect("the dashboard is JSON");
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    let re = regex::Regex::new(r"prescale_[a-z_]+").unwrap();
    let mut used = std::collections::BTreeSet::new();
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            for m in re.find_iter(t["expr"].as_str().unwrap()) {
                let name = m
                    .as_str()
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_count")
                    .trim_end_matches("_sum");
                assert!(
                    prescale::metrics::NAMES.contains(&name),
                    "the dashboard uses {name}, which the operator does not export"
                );
                used.insert(name.to_string());
            }
        }
    }
    for must in [
        "prescale_scaler_observed_load",
        "prescale_scaler_forecast_load",
        "prescale_scaler_desired_replicas",
        "prescale_scaler_current_replicas",
        "prescale_reconcile_errors_total",
    ] {
        assert!(used.contains(must), "the dashboard shows {must}");
    }
    // off by default
    let Some(default) = render(&[]) else { return };
    assert!(!of_kind(&default, "ConfigMap").iter().any(|c| {
        c["metadata"]["name"]
            .as_str()
            .unwrap()
            .ends_with("-dashboard")
    }));
}

#[test]
fn without_leader_election_an_upgrade_never_runs_two_operators() {
    let Some(docs) = render(&[]) else { return };
    let spec = &one(&docs, "Deployment")["spec"];
    assert_eq!(spec["strategy"]["type"], "Recreate", "{spec}");
    let Some(docs) = render(&[
        "--set",
        "leaderElection.enabled=true",
        "--set",
        "replicaCount=2",
    ]) else {
        return;
    };
    let spec = &one(&docs, "Deployment")["spec"];
    assert!(
        spec["strategy"].is_null(),
        "with leader election a rolling update is safe: {spec}"
    );
    let args = container(&docs)["args"].to_string();
    assert!(args.contains("--max-concurrent-reconciles=16"), "{args}");
}

#[test]
fn drain_aware_adds_pod_access_only_when_enabled() {
    let Some(docs) = render(&[]) else { return };
    let all = serde_json::to_string(&docs).unwrap();
    assert!(!all.contains("\"pods\""), "no RBAC on pods by default");
    let Some(docs) = render(&["--set", "drainAware.enabled=true"]) else {
        return;
    };
    let mut want = operator_rules(&[("apps", &["deployments", "statefulsets", "replicasets"])]);
    let pods = json!([[""], ["pods"], ["get", "list", "patch"]]);
    want.insert(3, format!("{} {} {}", pods[0], pods[1], pods[2]));
    assert_eq!(rules(one(&docs, "ClusterRole")), want);
    // with watchNamespaces, in each namespace's Role only
    let Some(docs) = render(&[
        "--set",
        "drainAware.enabled=true",
        "--set",
        "watchNamespaces={team-a,team-b}",
    ]) else {
        return;
    };
    assert!(of_kind(&docs, "ClusterRole").is_empty());
    let roles = of_kind(&docs, "Role");
    let with_pods: Vec<_> = roles
        .iter()
        .filter(|r| rules(r).contains(&want[3]))
        .map(|r| {
            r["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(with_pods, vec!["team-a", "team-b"]);
}

#[test]
fn an_options_namespaces_list_grants_it_in_those_namespaces_only() {
    let Some(docs) = render(&[
        "--set",
        "drainAware.enabled=true",
        "--set",
        "drainAware.namespaces={team-a,team-b}",
        "--set",
        "floorMode.enabled=true",
        "--set",
        "floorMode.namespaces={team-b}",
        "--set",
        "learnedLeadTime.enabled=true",
    ]) else {
        return;
    };
    // cluster-wide: the core rules and learnedLeadTime (no list); no pods, no floor writes
    let scale: &[(&str, &[&str])] = &[("apps", &["deployments", "statefulsets", "replicasets"])];
    let mut cluster = operator_rules(scale);
    cluster.insert(
        3,
        rule(
            &["apps"],
            &["deployments", "statefulsets", "replicasets"],
            &["get"],
        ),
    );
    assert_eq!(rules(one(&docs, "ClusterRole")), cluster);
    // a Role in each listed namespace with only the options that list it
    let roles = of_kind(&docs, "Role");
    let by_ns: Vec<(&str, Vec<String>)> = roles
        .iter()
        .map(|r| (r["metadata"]["namespace"].as_str().unwrap(), rules(r)))
        .collect();
    let pods = rule(&[""], &["pods"], &["get", "list", "patch"]);
    let mut team_b = vec![pods.clone()];
    team_b.extend(floor_rules());
    assert_eq!(by_ns, [("team-a", vec![pods]), ("team-b", team_b)]);
    let bindings = of_kind(&docs, "RoleBinding");
    assert_eq!(bindings.len(), 2);
    for (b, r) in bindings.iter().zip(&roles) {
        assert_eq!(b["metadata"]["namespace"], r["metadata"]["namespace"]);
        assert_eq!(
            b["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "prescale"})
        );
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": "prescale", "namespace": "prescale-system"}])
        );
    }
}

/// The rendered ValidatingAdmissionPolicy and its binding, if any.
fn admission_policy(docs: &[Value]) -> Option<(&Value, &Value)> {
    let policies = of_kind(docs, "ValidatingAdmissionPolicy");
    let bindings = of_kind(docs, "ValidatingAdmissionPolicyBinding");
    assert_eq!(policies.len(), bindings.len(), "a binding per policy");
    assert!(policies.len() <= 1);
    policies.first().map(|p| (*p, bindings[0]))
}

/// The (apiGroups, apiVersions, resources, operations) a policy matches.
fn policy_matches(policy: &Value) -> Vec<String> {
    policy["spec"]["matchConstraints"]["resourceRules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["apiGroups"], r["apiVersions"], r["resources"], r["operations"]
            )
        })
        .collect()
}

#[test]
fn the_admission_policy_binds_the_operators_account_when_it_may_patch_pods_or_autoscalers() {
    // no option that writes foreign objects, or the policy off: none
    for args in [
        &[][..],
        &["--set", "learnedLeadTime.enabled=true"],
        &[
            "--set",
            "drainAware.enabled=true",
            "--set",
            "rbac.admissionPolicy.enabled=false",
        ],
    ] {
        let Some(docs) = render(args) else { return };
        assert!(admission_policy(&docs).is_none(), "{args:?}");
    }
    let ops = r#"["CREATE","UPDATE","DELETE"]"#;
    let pods = format!(r#"[""] ["v1"] ["pods"] {ops}"#);
    let floor = [
        format!(r#"["autoscaling"] ["v2"] ["horizontalpodautoscalers"] {ops}"#),
        format!(r#"["keda.sh"] ["*"] ["scaledobjects"] {ops}"#),
        format!(r#"["prescale.dev"] ["*"] ["predictivescalers"] {ops}"#),
    ];
    for (args, want) in [
        (
            &["--set", "drainAware.enabled=true"][..],
            vec![pods.clone()],
        ),
        (&["--set", "floorMode.enabled=true"][..], floor.to_vec()),
        (
            &[
                "--set",
                "floorMode.enabled=true",
                "--set",
                "drainAware.enabled=true",
                "--set",
                "drainAware.namespaces={team-a}",
            ][..],
            [vec![pods.clone()], floor.to_vec()].concat(),
        ),
    ] {
        let Some(docs) = render(args) else { return };
        let (policy, binding) = admission_policy(&docs).expect("a policy");
        assert_eq!(policy_matches(policy), want, "{args:?}");
        let spec = &policy["spec"];
        assert_eq!(spec["failurePolicy"], "Fail");
        assert_eq!(spec["matchConstraints"]["matchPolicy"], "Equivalent");
        // bound to the release's ServiceAccount only, by the policy's own match condition
        assert_eq!(
            spec["matchConditions"],
            json!([{"name": "the-operators-service-account",
                    "expression": "request.userInfo.username == 'system:serviceaccount:prescale-system:prescale'"}])
        );
        // one name per release namespace (the policy is cluster-scoped)
        assert_eq!(policy["metadata"]["name"], "prescale-prescale-system");
        assert_eq!(binding["metadata"]["name"], "prescale-prescale-system");
        assert_eq!(binding["spec"]["policyName"], "prescale-prescale-system");
        assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
        assert!(
            binding["spec"]["matchResources"].is_null(),
            "every namespace"
        );
        let validations = spec["validations"].as_array().unwrap();
        assert_eq!(validations.len(), 2);
        for v in validations {
            assert!(
                v["messageExpression"]
                    .as_str()
                    .unwrap()
                    .starts_with("'system:serviceaccount:prescale-system:prescale may ")
            );
        }
    }
    // another ServiceAccount, and without the chart's RBAC: still bound to the operator's account
    let Some(docs) = render(&[
        "--set",
        "drainAware.enabled=true",
        "--set",
        "rbac.create=false",
        "--set",
        "serviceAccount.name=ops",
    ]) else {
        return;
    };
    assert!(of_kind(&docs, "ClusterRole").is_empty());
    let (policy, _) = admission_policy(&docs).expect("a policy without rbac.create");
    assert!(
        policy["spec"]["matchConditions"][0]["expression"]
            .as_str()
            .unwrap()
            .ends_with("'system:serviceaccount:prescale-system:ops'")
    );
}
