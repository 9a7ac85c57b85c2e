//! What a platform team does on day one, against a real kube-apiserver (tests/support/cluster.rs):
//! `kubectl apply --dry-run=server` of every example, and `helm install`, `helm upgrade` and
//! `helm uninstall` of the chart (the CRD from the chart's `crds/`, the RBAC, the operator's
//! Deployment, whose Pod kube-controller-manager creates and no scheduler places). With every
//! option on, the chart's ServiceAccount may change only the floor of an HPA or ScaledObject, a
//! pod's deletion cost and its scaler's finalizer, in kube-system as anywhere (the chart's
//! ValidatingAdmissionPolicy), and reads what docs/security.md says it reads.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use prescale::api::PredictiveScaler;
use serde_json::{Value, json};
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

/// `kubectl ARGS` as the identity of `kubeconfig`: its stdout, or its stderr when it failed.
fn kubectl_as(kube: &KubeCluster, kubeconfig: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["--kubeconfig", kubeconfig];
    all.extend_from_slice(args);
    let out = kube.kubectl(&all);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Waits until the admission policy at `policy` refuses the account of `kubeconfig` a relabel of
/// the pod kube-system/probe (the API server loads a new policy within seconds) and checks that it
/// compiled against the kinds' schemas without a warning; how long after `installed` that was.
fn policy_in_force(
    kube: &KubeCluster,
    kubeconfig: &str,
    policy: &str,
    installed: Instant,
) -> Duration {
    let refused = wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
        let probe = kubectl_as(
            kube,
            kubeconfig,
            &[
                "label",
                "pod",
                "probe",
                "--overwrite",
                &format!("try={}", installed.elapsed().as_millis()),
            ],
        );
        probe
            .err()
            .filter(|e| e.contains("ValidatingAdmissionPolicy"))
    })
    .unwrap_or_else(|| {
        panic!(
            "the chart's admission policy never refused a relabel: {}",
            kube.get(policy)
        )
    });
    let in_force = installed.elapsed();
    assert!(
        refused.contains(
            "system:serviceaccount:prescale-options:prescale may change only the \
             controller.kubernetes.io/pod-deletion-cost annotation of a Pod; this update of Pod \
             kube-system/probe also changes its labels (refused by the ValidatingAdmissionPolicy \
             prescale-prescale-options of the prescale chart)"
        ),
        "{refused}"
    );
    let checked = wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
        let status = kube.get(policy)["status"].clone();
        (!status["typeChecking"].is_null()).then_some(status)
    })
    .expect("the API server type-checks the policy");
    assert_eq!(
        checked["typeChecking"],
        json!({}),
        "type-checking warnings: {checked}"
    );
    in_force
}

#[test]
fn with_every_option_the_operators_account_changes_only_floors_deletion_costs_and_its_finalizer() {
    let kube = KubeCluster::shared();
    let chart = repo_root().join("charts/prescale").display().to_string();
    let ns = "prescale-options";
    let sys = "kube-system";
    kube.kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager=prescale-tests",
        "-f",
        &repo_root()
            .join("tests/floor/scaledobject-crd.yaml")
            .display()
            .to_string(),
    ]);
    kube.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/scaledobjects.keda.sh",
    ]);
    helm_ok(
        kube,
        &[
            "install",
            "prescale",
            &chart,
            "--namespace",
            ns,
            "--create-namespace",
            "--set",
            "prometheus.url=http://prometheus.monitoring:9090",
            "--set",
            "floorMode.enabled=true",
            "--set",
            "drainAware.enabled=true",
            "--set",
            "learnedLeadTime.enabled=true",
        ],
    );
    let installed = Instant::now();
    // what an attacker would go for in kube-system: a pod with a literal secret in its env, an
    // HPA, a ScaledObject, a PredictiveScaler
    let pods = format!("/api/v1/namespaces/{sys}/pods");
    kube.create(
        &pods,
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "victim", "namespace": sys, "labels": {"app": "victim"},
                            "annotations": {"owner": "platform"}},
               "spec": {"containers": [{"name": "c", "image": "example/dns:1",
                                        "env": [{"name": "API_KEY", "value": "s3cr3t"}]}]}}),
    );
    kube.create(
        &pods,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": sys},
               "spec": {"containers": [{"name": "c", "image": "example/probe:1"}]}}),
    );
    kube.create(
        &format!("/apis/autoscaling/v2/namespaces/{sys}/horizontalpodautoscalers"),
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
               "metadata": {"name": "victim", "namespace": sys},
               "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "coredns"},
                        "minReplicas": 2, "maxReplicas": 5,
                        "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                     "target": {"type": "Utilization", "averageUtilization": 80}}}]}}),
    );
    kube.create(
        &format!("/apis/keda.sh/v1alpha1/namespaces/{sys}/scaledobjects"),
        json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
               "metadata": {"name": "victim", "namespace": sys},
               "spec": {"scaleTargetRef": {"name": "coredns"}, "minReplicaCount": 1, "maxReplicaCount": 5,
                        "triggers": [{"type": "prometheus", "metadata": {"query": "x", "threshold": "10"}}]}}),
    );
    kube.create(
        &format!("/apis/prescale.dev/v1alpha1/namespaces/{sys}/predictivescalers"),
        PredictiveScaler::test(sys, "victim").json(),
    );
    let token = kube.service_account_token(ns, "prescale");
    let path = kube.dir().join("prescale-options.kubeconfig");
    kube.token_kubeconfig(&path, &kube.api_url(), &token, sys);
    let kc = path.display().to_string();
    let sa = kube.kubectl_ok(&[
        "--kubeconfig",
        &kc,
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(sa, "system:serviceaccount:prescale-options:prescale");

    // the chart's policy, once in force (without one the refusals below fail: the chart before it
    // let this account change every one of them)
    let policy = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/prescale-prescale-options";
    let in_force = kube
        .try_get(policy)
        .map(|_| policy_in_force(kube, &kc, policy, installed));

    // refused: each with what it would have changed
    let cases: [(&str, Vec<&str>, &str); 12] = [
        (
            "a pod's image",
            vec![
                "patch",
                "pod",
                "victim",
                "-p",
                r#"{"spec":{"containers":[{"name":"c","image":"evil/dns:1"}]}}"#,
            ],
            "this update of Pod kube-system/victim also changes its spec",
        ),
        (
            "a pod's labels (out of its ReplicaSet)",
            vec!["label", "pod", "victim", "--overwrite", "app=elsewhere"],
            "also changes its labels",
        ),
        (
            "another annotation of a pod",
            vec!["annotate", "pod", "victim", "owner-"],
            "also changes the annotation owner",
        ),
        (
            "a pod's ownerReferences",
            vec![
                "patch",
                "pod",
                "victim",
                "--type=merge",
                "-p",
                r#"{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"Node","name":"n","uid":"00000000-0000-0000-0000-000000000001"}]}}"#,
            ],
            "also changes its ownerReferences",
        ),
        (
            "an HPA's maxReplicas",
            vec![
                "patch",
                "hpa",
                "victim",
                "--type=merge",
                "-p",
                r#"{"spec":{"maxReplicas":50}}"#,
            ],
            "may change only spec.minReplicas and prescale.dev/ annotations of a HorizontalPodAutoscaler; \
             this update of HorizontalPodAutoscaler kube-system/victim also changes its spec",
        ),
        (
            "an HPA's metric target",
            vec![
                "patch",
                "hpa",
                "victim",
                "--type=json",
                "-p",
                r#"[{"op":"replace","path":"/spec/metrics/0/resource/target/averageUtilization","value":5}]"#,
            ],
            "also changes its spec",
        ),
        (
            "an HPA's target with its min",
            vec![
                "patch",
                "hpa",
                "victim",
                "--type=merge",
                "-p",
                r#"{"spec":{"minReplicas":3,"scaleTargetRef":{"name":"kube-proxy"}}}"#,
            ],
            "also changes its spec",
        ),
        (
            "an HPA's labels",
            vec!["label", "hpa", "victim", "team=attacker"],
            "also changes its labels",
        ),
        (
            "a ScaledObject's maxReplicaCount",
            vec![
                "patch",
                "scaledobjects.keda.sh",
                "victim",
                "--type=merge",
                "-p",
                r#"{"spec":{"maxReplicaCount":100}}"#,
            ],
            "may change only spec.minReplicaCount and prescale.dev/ annotations of a ScaledObject",
        ),
        (
            "a PredictiveScaler's spec",
            vec![
                "patch",
                "predictivescalers.prescale.dev",
                "victim",
                "--type=merge",
                "-p",
                r#"{"spec":{"maxReplicas":1000}}"#,
            ],
            "may change only the prescale.dev/restore-floor finalizer of a PredictiveScaler",
        ),
        (
            "an HPA's CPU target through autoscaling/v1",
            vec![
                "patch",
                "horizontalpodautoscalers.v1.autoscaling",
                "victim",
                "--type=merge",
                "-p",
                r#"{"spec":{"targetCPUUtilizationPercentage":5}}"#,
            ],
            "also changes its spec",
        ),
        (
            "deleting a pod",
            vec!["delete", "pod", "victim", "--wait=false"],
            "forbidden",
        ),
    ];
    for (what, args, want) in &cases {
        match kubectl_as(kube, &kc, args) {
            Ok(out) => panic!("the operator's account could change {what}: {out}"),
            Err(e) => assert!(e.contains(want), "{what}: expected {want:?} in: {e}"),
        }
    }
    let pod = kube.get(&format!("{pods}/victim"));
    assert_eq!(pod["spec"]["containers"][0]["image"], "example/dns:1");
    assert_eq!(pod["metadata"]["labels"], json!({"app": "victim"}));
    let hpa = kube.get(&format!(
        "/apis/autoscaling/v2/namespaces/{sys}/horizontalpodautoscalers/victim"
    ));
    assert_eq!(hpa["spec"]["maxReplicas"], 5);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );

    // allowed: what floor mode and drain-aware scale-in write (merge patches, as the operator),
    // and a floor through server-side apply
    let ssa = kube.dir().join("prescale-options-floor.yaml");
    std::fs::write(
        &ssa,
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: victim, namespace: kube-system}\n\
         spec:\n  minReplicas: 4\n  maxReplicas: 5\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: coredns}\n",
    )
    .unwrap();
    let ssa = ssa.display().to_string();
    for args in [
        &[
            "patch",
            "pod",
            "victim",
            "--type=merge",
            "-p",
            r#"{"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":"-3"}}}"#,
        ][..],
        &[
            "patch",
            "hpa",
            "victim",
            "--type=merge",
            "-p",
            r#"{"spec":{"minReplicas":3},"metadata":{"annotations":{"prescale.dev/original-min-replicas":"2"}}}"#,
        ],
        &[
            "patch",
            "scaledobjects.keda.sh",
            "victim",
            "--type=merge",
            "-p",
            r#"{"spec":{"minReplicaCount":4}}"#,
        ],
        &[
            "patch",
            "predictivescalers.prescale.dev",
            "victim",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["prescale.dev/restore-floor"]}}"#,
        ],
        &[
            "patch",
            "predictivescalers.prescale.dev",
            "victim",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
        &[
            "apply",
            "--server-side",
            "--field-manager=prescale",
            "--force-conflicts",
            "-f",
            &ssa,
        ],
    ] {
        if let Err(e) = kubectl_as(kube, &kc, args) {
            panic!("the operator's account was refused {args:?}: {e}");
        }
    }
    let pod = kube.get(&format!("{pods}/victim"));
    assert_eq!(
        pod["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"],
        "-3"
    );
    let hpa = kube.get(&format!(
        "/apis/autoscaling/v2/namespaces/{sys}/horizontalpodautoscalers/victim"
    ));
    assert_eq!(hpa["spec"]["minReplicas"], 4);
    assert_eq!(
        hpa["metadata"]["annotations"]["prescale.dev/original-min-replicas"],
        "2"
    );
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );

    // what the token reads, as docs/security.md says: whole pods (a literal env value
    // too) and the targets themselves; never a Secret
    let env = kubectl_as(
        kube,
        &kc,
        &[
            "get",
            "pod",
            "victim",
            "-o",
            "jsonpath={.spec.containers[0].env[0].value}",
        ],
    );
    assert_eq!(
        env.as_deref(),
        Ok("s3cr3t"),
        "drainAware's list/get of pods reads env values"
    );
    let kc_path = std::path::Path::new(&kc);
    for readable in [
        &["list", "pods", "-n", sys][..],
        &["get", "deployments", "-n", sys],
        &["get", "scaledobjects.keda.sh", "-n", sys],
        &["list", "horizontalpodautoscalers", "-n", sys],
    ] {
        assert!(kube.can_i(kc_path, readable), "{readable:?}");
    }
    for refused in [
        &["get", "secrets", "-n", sys][..],
        &["list", "configmaps", "-n", sys],
        &["patch", "deployments", "-n", sys],
        &["create", "pods", "-n", sys],
        &["delete", "horizontalpodautoscalers", "-n", sys],
        &[
            "patch",
            "pods",
            "--subresource=ephemeralcontainers",
            "-n",
            sys,
        ],
        &["create", "pods", "--subresource=exec", "-n", sys],
        &[
            "patch",
            "horizontalpodautoscalers",
            "--subresource=status",
            "-n",
            sys,
        ],
    ] {
        assert!(!kube.can_i(kc_path, refused), "{refused:?}");
    }
    // confined to the release's namespace, the reads of pods and targets are gone from kube-system
    helm_ok(
        kube,
        &[
            "upgrade",
            "prescale",
            &chart,
            "--namespace",
            ns,
            "--reuse-values",
            "--set",
            "drainAware.namespaces={prescale-options}",
            "--set",
            "learnedLeadTime.namespaces={prescale-options}",
        ],
    );
    for (args, want) in [
        (&["list", "pods", "-n", sys][..], false),
        (&["get", "deployments", "-n", sys], false),
        (&["list", "pods", "-n", ns], true),
        (&["patch", "pods", "-n", ns], true),
        (&["get", "deployments", "-n", ns], true),
        (&["patch", "horizontalpodautoscalers", "-n", sys], true),
    ] {
        assert_eq!(
            kube.can_i(kc_path, args),
            want,
            "{args:?} after confining drainAware and learnedLeadTime"
        );
    }
    report(&format!(
        "[kube-api] every chart option on: the operator's ServiceAccount was refused {} changes in kube-system \
         (pod image, labels, annotations, ownerReferences; HPA max, metric target, scale target, labels, \
         v1 CPU target; ScaledObject max; PredictiveScaler spec; pod delete) and allowed the 6 writes of floor mode \
         and drain-aware scale-in; the admission policy was in force {} after helm install returned",
        cases.len(),
        in_force.map_or("never".to_string(), |d| format!("{d:.2?}"))
    ));
}
