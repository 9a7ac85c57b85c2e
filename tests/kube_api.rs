//! What a platform team does on day one, against a real kube-apiserver (tests/support/cluster.rs):
//! `kubectl apply --dry-run=server` of every example, and `helm install`, `helm upgrade` and
//! `helm uninstall` of the chart (the CRD from the chart's `crds/`, the RBAC, the operator's
//! Deployment, whose Pod kube-controller-manager creates and no scheduler places).

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cluster::{CRD, KubeCluster};
use support::{repo_root, report, wait_until};

/// The example files that are Kubernetes manifests (examples/sources.yaml is the operator's
/// sources file, not a manifest).
fn example_manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples"))
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            text.lines().any(|l| l.starts_with("apiVersion:")) && text.contains("\nkind:")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_is_accepted_by_the_api_server() {
    let kube = KubeCluster::shared();
    let files = example_manifests();
    assert!(files.len() >= 6, "examples: {files:?}");
    let mut namespaces: Vec<String> = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap();
            if let Some(ns) = v["metadata"]["namespace"].as_str()
                && !namespaces.iter().any(|n| n == ns)
            {
                namespaces.push(ns.to_string());
            }
        }
    }
    for ns in &namespaces {
        kube.create_namespace(ns);
    }
    let t = Instant::now();
    let mut accepted = Vec::new();
    for f in &files {
        let out = kube.kubectl(&[
            "apply",
            "--dry-run=server",
            "--validate=strict",
            "-f",
            &f.display().to_string(),
        ]);
        assert!(
            out.status.success(),
            "{}: refused by the API server: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        accepted.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    report(&format!(
        "[kube-api] {} example files accepted by kube-apiserver (dry-run=server, strict) in {:.2?}: {}",
        files.len(),
        t.elapsed(),
        accepted.join("; ")
    ));
}

fn helm_ok(kube: &KubeCluster, args: &[&str]) -> String {
    let out = kube.helm(args);
    assert!(
        out.status.success(),
        "helm {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn helm_installs_upgrades_and_uninstalls_the_chart() {
    let kube = KubeCluster::start_without_crd();
    let chart = repo_root().join("charts/prescale").display().to_string();
    let ns = "prescale";

    // install: the CRD comes from the chart
    let t = Instant::now();
    helm_ok(
        &kube,
        &[
            "install",
            "prescale",
            &chart,
            "--namespace",
            ns,
            "--create-namespace",
            "--set",
            "prometheus.url=http://prometheus.monitoring:9090",
        ],
    );
    let installed = t.elapsed();
    kube.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        &format!("crd/{CRD}"),
    ]);
    for path in [
        format!("/api/v1/namespaces/{ns}/serviceaccounts/prescale"),
        format!("/api/v1/namespaces/{ns}/configmaps/prescale-sources"),
        format!("/api/v1/namespaces/{ns}/services/prescale"),
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/prescale".to_string(),
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/prescale".to_string(),
    ] {
        assert!(
            kube.try_get(&path).is_some(),
            "helm install created no {path}"
        );
    }
    // kube-controller-manager takes the Deployment from there: a ReplicaSet and a (Pending) Pod
    let pods = wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
        let pods = kube.get(&format!(
            "/api/v1/namespaces/{ns}/pods?labelSelector=app.kubernetes.io%2Fname%3Dprescale"
        ));
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        (!items.is_empty()).then_some(items)
    })
    .unwrap_or_else(|| {
        panic!(
            "no operator Pod was created:\n{}",
            kube.log_tail("kube-controller-manager", 30)
        )
    });
    assert_eq!(pods[0]["status"]["phase"], "Pending", "no scheduler here");
    let sa = pods[0]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(sa, "prescale", "the Pod runs as the chart's ServiceAccount");

    // upgrade: watch one namespace; the ClusterRole gives way to a Role there
    kube.create_namespace("team-a");
    let t = Instant::now();
    helm_ok(
        &kube,
        &[
            "upgrade",
            "prescale",
            &chart,
            "--namespace",
            ns,
            "--reuse-values",
            "--set",
            "watchNamespaces={team-a}",
            "--set",
            "leaderElection.enabled=true",
            "--set",
            "replicaCount=2",
        ],
    );
    let upgraded = t.elapsed();
    assert!(
        kube.try_get("/apis/rbac.authorization.k8s.io/v1/clusterroles/prescale")
            .is_none(),
        "the ClusterRole should be gone with watchNamespaces"
    );
    let role = kube.get("/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles/prescale");
    assert!(
        role["rules"].as_array().is_some_and(|r| !r.is_empty()),
        "{role}"
    );
    assert!(
        kube.try_get(&format!(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/prescale-leader-election"
        ))
        .is_some(),
        "the leader-election Role"
    );
    let deployment = kube.get(&format!(
        "/apis/apps/v1/namespaces/{ns}/deployments/prescale"
    ));
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("--leader-elect") && args.contains("team-a"),
        "the upgraded Deployment's args: {args}"
    );
    let history = helm_ok(&kube, &["history", "prescale", "--namespace", ns]);
    assert!(history.lines().count() >= 3, "two revisions: {history}");

    // uninstall: everything but the CRD (helm never deletes CRDs from crds/, so scalers survive)
    let t = Instant::now();
    helm_ok(
        &kube,
        &["uninstall", "prescale", "--namespace", ns, "--wait"],
    );
    let uninstalled = t.elapsed();
    for path in [
        format!("/apis/apps/v1/namespaces/{ns}/deployments/prescale"),
        format!("/api/v1/namespaces/{ns}/serviceaccounts/prescale"),
        "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles/prescale".to_string(),
    ] {
        assert!(
            kube.try_get(&path).is_none(),
            "{path} survived helm uninstall"
        );
    }
    assert!(
        kube.try_get(&format!(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD}"
        ))
        .is_some(),
        "the CRD stays"
    );
    report(&format!(
        "[kube-api] helm on kube-apiserver {}: install {installed:.2?} (CRD, RBAC, Deployment -> Pending Pod), \
         upgrade to watchNamespaces + leader election {upgraded:.2?}, uninstall {uninstalled:.2?}; control plane \
         up in {:.2?}",
        kube.get("/version")["gitVersion"],
        kube.start_time
    ));
}
