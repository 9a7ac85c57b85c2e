//! prescale where users run it: on a real node (`scripts/cluster.sh up` starts containerd, runc,
//! kube-scheduler and a kubelet beside the control plane), from its own image (`scripts/image.sh`,
//! loaded into the node, never pulled), installed by `helm install`, scaling pods that really
//! start. See docs/node.md. The node needs root, as containerd does; scripts/setup.sh installs
//! what it needs.

mod support;

use std::time::{Duration, Instant};

use prescale::api::{Fallback, Mode, ModelKind, PredictiveScaler, duration::parse_duration};
use serde_json::Value;
use support::node::{
    NODE_IP, NodeCluster, pids_running, pod_process, process_uids, root_mount_options,
};
use support::scenario::daily_peak;
use support::{
    Prometheus, PrometheusOptions, http_request, openmetrics_gauge, report, unix_now, wait_until,
};

const OPERATOR_NS: &str = "prescale-system";

/// `helm install` of the chart with two replicas and leader election, the image from
/// `scripts/image.sh`; waits for the rollout.
fn helm_install(node: &NodeCluster, image: &str, extra: &[&str]) {
    let (repository, tag) = image
        .rsplit_once(':')
        .expect("an image reference with a tag");
    let chart = support::repo_root().join("charts/prescale");
    let mut args = vec![
        "install",
        "prescale",
        chart.to_str().unwrap(),
        "--namespace",
        OPERATOR_NS,
        "--create-namespace",
        "--wait",
        "--timeout",
        "180s",
    ];
    let repository = format!("image.repository={repository}");
    let tag = format!("image.tag={tag}");
    args.extend([
        "--set",
        &repository,
        "--set",
        &tag,
        "--set",
        "image.pullPolicy=Never",
    ]);
    for e in extra {
        args.extend(["--set", e]);
    }
    let out = node.kube.helm(&args);
    assert!(
        out.status.success(),
        "helm install failed: {}{}\nkubelet: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        node.kube.log_tail("kubelet", 30)
    );
}

fn lease_holder(node: &NodeCluster) -> Option<String> {
    node.kube
        .try_get(&format!(
            "/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NS}/leases/prescale-leader"
        ))
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

fn name(pod: &Value) -> String {
    pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn helm_install_runs_the_operator_image_on_a_real_node_and_the_standby_takes_over() {
    let node = NodeCluster::up();
    let images = node.build_images();
    report(&format!(
        "node: cluster.sh up with the node in {:.1?}; image.sh (debug binaries) built and loaded both images in {:.1?}",
        node.up_time, images.build_time
    ));

    let t = Instant::now();
    helm_install(
        &node,
        &images.operator,
        &["replicaCount=2", "leaderElection.enabled=true"],
    );
    let pods = node.wait_ready_pods(
        OPERATOR_NS,
        "app.kubernetes.io/name=prescale",
        2,
        Duration::from_secs(60),
    );
    report(&format!(
        "node: helm install to two Ready operator pods in {:.1?}",
        t.elapsed()
    ));
    for pod in &pods {
        let container = &pod["spec"]["containers"][0];
        assert_eq!(container["image"], images.operator.as_str(), "{pod:#}");
        assert!(
            pod["status"]["podIP"]
                .as_str()
                .is_some_and(|ip| ip.starts_with("10.244.0.")),
            "a pod IP on the node's bridge: {:#}",
            pod["status"]
        );
    }

    // the running containers: the non-root user 65532 and a read-only root filesystem, as the
    // image and the chart's securityContext say, seen from the processes themselves
    let pids = pids_running(&["/prescale", "run"]);
    assert_eq!(
        pids.len(),
        2,
        "one `/prescale run` process per pod: {pids:?}"
    );
    for pid in pids {
        assert_eq!(
            process_uids(pid),
            vec![65532; 4],
            "process {pid}'s user IDs"
        );
        let options = root_mount_options(pid);
        assert!(
            options.split(',').any(|o| o == "ro"),
            "process {pid}'s root filesystem is mounted {options}, not read-only"
        );
    }

    // /metrics answers on the pod's address, as a Prometheus on the cluster would scrape it
    let ip = pods[0]["status"]["podIP"].as_str().unwrap();
    let metrics = http_request("GET", &format!("http://{ip}:8080/metrics"), None, None)
        .expect("GET /metrics on the pod's IP");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("prescale_build_info"),
        "the operator's own metrics: {}",
        &metrics.body[..metrics.body.len().min(2000)]
    );

    // one pod leads; its process killed without a goodbye (SIGKILL, as a crash or a node failure
    // would: no release of the Lease) and its pod deleted, another replica takes over: the standby,
    // or the Deployment's replacement if it polls first
    let leader = wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
        lease_holder(&node).filter(|h| pods.iter().any(|p| name(p) == *h))
    })
    .expect("one of the two pods holds the Lease");
    let pid = pod_process(&leader, &["/prescale", "run"])
        .unwrap_or_else(|| panic!("no `/prescale run` process of pod {leader}"));
    let t = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill -KILL {pid}");
    node.kube.kubectl_ok(&[
        "-n",
        OPERATOR_NS,
        "delete",
        "pod",
        &leader,
        "--grace-period=0",
        "--force",
    ]);
    let holder = wait_until(Duration::from_secs(90), Duration::from_millis(250), || {
        lease_holder(&node).filter(|h| *h != leader)
    })
    .unwrap_or_else(|| {
        panic!(
            "no other replica took the Lease from {leader} within 90 s: {}",
            String::from_utf8_lossy(
                &node
                    .kube
                    .kubectl(&[
                        "-n",
                        OPERATOR_NS,
                        "logs",
                        "-l",
                        "app.kubernetes.io/name=prescale"
                    ])
                    .stdout
            )
        )
    });
    report(&format!(
        "node: {holder} took the Lease {:.1?} after the leader's process was killed",
        t.elapsed()
    ));
    let log = node
        .kube
        .kubectl_ok(&["-n", OPERATOR_NS, "logs", &holder, "--tail", "50"]);
    assert!(log.contains("leader election: leading"), "{log}");
    // the Deployment replaces the killed pod, which becomes the standby
    node.wait_ready_pods(
        OPERATOR_NS,
        "app.kubernetes.io/name=prescale",
        2,
        Duration::from_secs(60),
    );
}

/// Where the demo gateway and its scaler live.
const DEMO_NS: &str = "ai-gateway";
const METRIC: &str = "llm_proxy_requests_per_second";
/// The daily peak of the backfilled history: BASE needs minReplicas (2 at 10 per replica), the top
/// ~12 replicas; it comes back PEAK_IN after the test starts.
const BASE: f64 = 20.0;
const AMPLITUDE: f64 = 100.0;
const SIGMA: f64 = 180.0;
const PEAK_IN: i64 = 8 * 60;
/// How long a gateway pod warms up before its readiness probe passes.
const WARMUP_S: u64 = 10;

/// The demo gateway: `replicas` pods of the gateway image that pass their readiness probe
/// WARMUP_S after they start.
fn gateway_deployment(image: &str, replicas: i64) -> Value {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "llm-proxy", "namespace": DEMO_NS, "labels": {"app": "llm-proxy"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "llm-proxy"}},
            "template": {
                "metadata": {"labels": {"app": "llm-proxy"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "gateway",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "args": ["--warmup", format!("{WARMUP_S}s"), "--capacity", "10"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {
                            "httpGet": {"path": "/readyz", "port": "http"},
                            "periodSeconds": 1, "failureThreshold": 1
                        },
                        "securityContext": {
                            "runAsNonRoot": true, "readOnlyRootFilesystem": true,
                            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}
                        }
                    }]
                }
            }
        }
    })
}

/// Prometheus finds the pods of `namespaces` on the API server (kubernetes_sd_configs, role pod)
/// and scrapes their `http` port, as a Prometheus in a cluster does.
fn pod_discovery(node: &NodeCluster, namespaces: &[&str]) -> String {
    let pki = node.dir().join("pki");
    format!(
        r#"
  - job_name: pods
    scrape_interval: 2s
    kubernetes_sd_configs:
      - role: pod
        api_server: {api}
        namespaces: {{names: [{names}]}}
        tls_config: {{ca_file: {ca}, cert_file: {crt}, key_file: {key}}}
    relabel_configs:
      - {{source_labels: [__meta_kubernetes_pod_container_port_name], regex: http, action: keep}}
      - {{source_labels: [__meta_kubernetes_namespace], target_label: namespace}}
      - {{source_labels: [__meta_kubernetes_pod_name], target_label: pod}}
"#,
        api = node.kube.api_url(),
        names = namespaces.join(", "),
        ca = pki.join("ca.crt").display(),
        crt = pki.join("admin.crt").display(),
        key = pki.join("admin.key").display(),
    )
}

#[test]
fn the_operator_pod_scales_real_pods_before_the_peak_and_learns_how_long_they_take() {
    let node = NodeCluster::up();
    let images = node.build_images();

    // Prometheus on the node's address, where the operator's pod reaches it: 15 days of a daily
    // peak that comes back in PEAK_IN, and the pods it discovers on the API server
    let now = unix_now();
    let peak = now + PEAK_IN;
    let end = (now - 120) / 60 * 60;
    let history = openmetrics_gauge(
        METRIC,
        // the chart's source enforces the scaler's namespace on every query (enforceNamespaceLabel)
        &[("app", "llm-proxy"), ("namespace", DEMO_NS)],
        end - 15 * 86_400,
        end,
        60,
        |t| daily_peak(t, peak, BASE, AMPLITUDE, SIGMA),
    );
    let prom = Prometheus::start_with(
        &history,
        PrometheusOptions {
            host: Some(NODE_IP.into()),
            scrape_configs: Some(pod_discovery(&node, &[OPERATOR_NS, DEMO_NS])),
            binary: Some(node.prometheus_binary()),
            ..Default::default()
        },
    );

    let prom_url = format!("prometheus.url={}", prom.url());
    helm_install(
        &node,
        &images.operator,
        &[&prom_url, "learnedLeadTime.enabled=true", "syncInterval=2s"],
    );
    node.wait_ready_pods(
        OPERATOR_NS,
        "app.kubernetes.io/name=prescale",
        1,
        Duration::from_secs(60),
    );
    node.kube.create_namespace(DEMO_NS);
    node.kube.create(
        &format!("/apis/apps/v1/namespaces/{DEMO_NS}/deployments"),
        gateway_deployment(&images.gateway, 2),
    );
    let t = Instant::now();
    node.wait_ready_pods(DEMO_NS, "app=llm-proxy", 2, Duration::from_secs(60));
    let first_ready = t.elapsed();
    assert!(
        first_ready >= Duration::from_secs(WARMUP_S),
        "the gateway's pods were Ready after {first_ready:?}, before their {WARMUP_S}s warm-up"
    );
    report(&format!(
        "node: two gateway pods created to Ready in {first_ready:.1?} (warm-up {WARMUP_S}s)"
    ));
    node.kube.create(
        &format!("/apis/prescale.dev/v1alpha1/namespaces/{DEMO_NS}/predictivescalers"),
        PredictiveScaler::test(DEMO_NS, "llm-proxy")
            .min_max(2, 30)
            .mode(Mode::Active)
            .metric("requests", &format!("{METRIC}{{app=\"llm-proxy\"}}"), "10")
            .history("14d", "1m")
            .model(ModelKind::Auto)
            .quantile(0.9)
            .lead_time("Auto")
            .scale_down("15m", 10)
            .fallback(Fallback::Reactive)
            .json(),
    );

    // the operator's pod raises the replicas before the peak, from the forecast alone (the load it
    // observes is the base), and the new pods start and pass their readiness probes
    let deployment = format!("/apis/apps/v1/namespaces/{DEMO_NS}/deployments/llm-proxy");
    let scaled = wait_until(
        Duration::from_secs((peak - unix_now()).max(0) as u64),
        Duration::from_millis(500),
        || {
            let d = node.kube.get(&deployment);
            let want = d["spec"]["replicas"].as_i64()?;
            (want > 2 && d["status"]["readyReplicas"].as_i64() == Some(want)).then_some(want)
        },
    )
    .unwrap_or_else(|| {
        panic!(
            "the gateway was not scaled up and Ready before the peak: {:#}\nscaler: {:#}\noperator: {}",
            node.kube.get(&deployment)["status"],
            node.kube.get(&format!(
                "/apis/prescale.dev/v1alpha1/namespaces/{DEMO_NS}/predictivescalers/llm-proxy"
            ))["status"],
            String::from_utf8_lossy(
                &node
                    .kube
                    .kubectl(&["-n", OPERATOR_NS, "logs", "deploy/prescale", "--tail", "30"])
                    .stdout
            )
        )
    });
    let before_peak = peak - unix_now();
    report(&format!(
        "node: the operator's pod scaled the gateway 2 -> {scaled} and all were Ready {before_peak}s before the peak"
    ));
    let pods = node.wait_ready_pods(
        DEMO_NS,
        "app=llm-proxy",
        scaled as usize,
        Duration::from_secs(10),
    );
    assert!(
        pods.iter()
            .all(|p| p["spec"]["nodeName"] == "prescale-node")
    );

    // it learned how long they took from their real readyReplicas: at least the warm-up
    let scaler =
        format!("/apis/prescale.dev/v1alpha1/namespaces/{DEMO_NS}/predictivescalers/llm-proxy");
    let lead = wait_until(Duration::from_secs(60), Duration::from_millis(500), || {
        let s = node.kube.get(&scaler);
        (s["status"]["leadTime"]["source"] == "Learned").then(|| s["status"]["leadTime"].clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "no learned lead time: {:#}",
            node.kube.get(&scaler)["status"]
        )
    });
    let sample =
        parse_duration(lead["samples"][0].as_str().expect("a sample")).expect("a duration");
    assert!(
        sample >= Duration::from_secs(WARMUP_S) && sample <= Duration::from_secs(120),
        "measured {sample:?} for pods that warm up {WARMUP_S}s: {lead}"
    );
    assert_eq!(lead["current"], "1m", "the bounded lead time: {lead}");
    report(&format!(
        "node: learned lead time sample {sample:?} (warm-up {WARMUP_S}s)"
    ));

    // Prometheus found the operator's and the gateway's pods on the API server and scrapes them
    let up = wait_until(Duration::from_secs(30), Duration::from_millis(500), || {
        let r = prom.query("sum by (namespace) (up{job=\"pods\"} == 1)");
        let count = |ns: &str| {
            r.as_array()?
                .iter()
                .find(|s| s["metric"]["namespace"] == ns)
                .and_then(|s| s["value"][1].as_str()?.parse::<i64>().ok())
        };
        (count(OPERATOR_NS) == Some(1) && count(DEMO_NS) == Some(scaled)).then_some(r)
    });
    assert!(
        up.is_some(),
        "pods discovered and scraped: {}",
        prom.query("up{job=\"pods\"}")
    );
    let built = prom.query("prescale_build_info");
    assert_eq!(built.as_array().map(Vec::len), Some(1), "{built}");
    let ready = prom.query("sum(gateway_ready)");
    assert_eq!(ready[0]["value"][1], scaled.to_string(), "{ready}");
}
