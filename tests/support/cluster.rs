//! A real Kubernetes control plane for the tests: etcd, kube-apiserver and kube-controller-manager, built
//! by `scripts/build_k8s.sh` from the Go module proxy and configured by `scripts/cluster.sh` (certificates,
//! ports, the admin kubeconfig and every component's flags come from that one script; this module only runs
//! the processes, so that they die with the test binary and a test can kill and restart any of them).
//!
//! - [`KubeCluster::shared`]: one control plane per test binary, started on first use; tests isolate
//!   themselves by namespace.
//! - [`KubeCluster::start`]: a private one, for tests that kill components or watch every namespace.
//! - [`ApiProxy`] (`cluster/api_proxy.rs`): a plain-HTTP proxy in front of the API server that injects faults (delays, error
//!   statuses) into matching requests and counts what passes, for an operator pointed at it.
//!
//! HTTP to the API server is the harness's minimal HTTP/1.1 client over rustls (the admin's client
//! certificate); kubectl and helm come from `.tools/bin` (scripts/setup.sh).

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output as ProcessOutput};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use serde_json::{Value, json};

use super::http::{HttpResponse, http_request, parse_http_response};
use super::process::{LOG_TAIL_LINES, Output, file_tail, spawn_with_output};
use super::tempdir::TestDir;
use super::{repo_root, wait_until};

mod api_proxy;
#[allow(unused_imports)] // as `cluster::ApiProxy`, for the test binaries that use it
pub use api_proxy::{ApiProxy, Fault};

/// The components, in start order.
pub const COMPONENTS: [&str; 3] = ["etcd", "kube-apiserver", "kube-controller-manager"];
/// The CRD's name.
pub const CRD: &str = "predictivescalers.prescale.dev";

/// A control plane on 127.0.0.1. Its processes are killed when it is dropped (a private one) or when the
/// test binary exits (the shared one: they run under `setpriv --pdeathsig KILL`).
pub struct KubeCluster {
    dir: PathBuf,
    /// Keeps (and removes) the directory of a private cluster; the shared one's is removed by a reaper.
    _owned: Option<TestDir>,
    api_port: u16,
    kubeconfig: PathBuf,
    tls: Arc<rustls::ClientConfig>,
    children: Mutex<HashMap<&'static str, Child>>,
    /// How long the start took (etcd to the controller-manager's first ServiceAccount).
    pub start_time: Duration,
}

/// `bash scripts/cluster.sh ARGS...`, panicking with its stderr unless it succeeds; its stdout.
pub(super) fn cluster_sh(args: &[&str], envs: &[(&str, String)]) -> String {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/cluster.sh"))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run scripts/cluster.sh");
    assert!(
        out.status.success(),
        "scripts/cluster.sh {} failed ({}). Run scripts/setup.sh (it builds the control plane with Go); these \
         tests are mandatory and are not skipped.\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tls_config(pki: &Path, client_cert: bool) -> Arc<rustls::ClientConfig> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.join("ca.crt")).expect("read ca.crt") {
        roots.add(cert.expect("ca.crt")).expect("add the CA");
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = if client_cert {
        let certs = CertificateDer::pem_file_iter(pki.join("admin.crt"))
            .expect("read admin.crt")
            .collect::<Result<Vec<_>, _>>()
            .expect("admin.crt");
        let key = PrivateKeyDer::from_pem_file(pki.join("admin.key")).expect("admin.key");
        builder
            .with_client_auth_cert(certs, key)
            .expect("client cert")
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(config)
}

/// One request over TLS to 127.0.0.1:`port` (`Connection: close`).
fn https_request(
    tls: &Arc<rustls::ClientConfig>,
    port: u16,
    head: &str,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<HttpResponse> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let conn = rustls::ClientConnection::new(tls.clone(), name).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // a peer that closes without close_notify, after a complete response
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    parse_http_response(&raw)
}

impl KubeCluster {
    /// The control plane shared by the tests of this binary (started on first use).
    pub fn shared() -> &'static KubeCluster {
        static SHARED: OnceLock<KubeCluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            let dir = TestDir::new("cluster").into_path_kept();
            reap_after_exit(&dir);
            let mut cluster = KubeCluster::init(dir, None);
            cluster.start_time = cluster.start_all();
            cluster.install_crd();
            cluster
        })
    }

    /// A control plane of its own, with the CRD installed; stopped and removed on drop.
    pub fn start() -> KubeCluster {
        let mut cluster = KubeCluster::init_only();
        cluster.start_time = cluster.start_all();
        cluster.install_crd();
        cluster
    }

    /// A control plane of its own without the CRD (for `helm install`); stopped and removed on drop.
    pub fn start_without_crd() -> KubeCluster {
        let mut cluster = KubeCluster::init_only();
        cluster.start_time = cluster.start_all();
        cluster
    }

    /// Certificates, ports and kubeconfig, but no process yet (see [`KubeCluster::start_component`]).
    pub fn init_only() -> KubeCluster {
        let owned = TestDir::new("cluster");
        let dir = owned.path().to_path_buf();
        KubeCluster::init(dir, Some(owned))
    }

    fn init(dir: PathBuf, owned: Option<TestDir>) -> KubeCluster {
        let t = Instant::now();
        cluster_sh(&["init", &dir.display().to_string()], &[]);
        let cluster = KubeCluster::attach(dir, owned);
        eprintln!(
            "[harness] cluster in {} (API port {}), initialised in {:.2?}",
            cluster.dir.display(),
            cluster.api_port,
            t.elapsed()
        );
        cluster
    }

    /// The cluster `scripts/cluster.sh init` or `up` made in `dir`, to talk to (its processes are
    /// not this value's: they stop with [`super::node::NodeCluster`] or with the script).
    pub(super) fn attach(dir: PathBuf, owned: Option<TestDir>) -> KubeCluster {
        let env = fs::read_to_string(dir.join("cluster.env")).expect("cluster.env");
        let api_port = env
            .lines()
            .find_map(|l| l.strip_prefix("API_PORT="))
            .and_then(|p| p.trim().parse().ok())
            .expect("API_PORT in cluster.env");
        KubeCluster {
            tls: tls_config(&dir.join("pki"), true),
            kubeconfig: dir.join("admin.kubeconfig"),
            dir,
            _owned: owned,
            api_port,
            children: Mutex::default(),
            start_time: Duration::ZERO,
        }
    }

    /// Starts every component; how long it took.
    fn start_all(&self) -> Duration {
        let t = Instant::now();
        for c in COMPONENTS {
            self.start_component(c);
        }
        self.wait_controller_manager();
        eprintln!("[harness] control plane up in {:.2?}", t.elapsed());
        t.elapsed()
    }

    /// Starts one component and waits until it is healthy (the controller-manager: until its process
    /// runs; see [`KubeCluster::wait_controller_manager`]).
    pub fn start_component(&self, component: &'static str) {
        let argv = cluster_sh(&["argv", component, &self.dir.display().to_string()], &[]);
        let argv: Vec<String> = argv.lines().map(str::to_string).collect();
        let log = self.log_path(component);
        let child = spawn_with_output(Path::new(&argv[0]), &argv[1..], &[], Output::File(log));
        let old = self.children.lock().unwrap().insert(component, child);
        assert!(old.is_none(), "{component} was already running");
        match component {
            "etcd" => self.wait_etcd(),
            "kube-apiserver" => self.wait_ready(Duration::from_secs(120)),
            _ => {}
        }
    }

    /// Kills one component (SIGKILL: no clean shutdown), as a crash would.
    pub fn kill_component(&self, component: &'static str) {
        if let Some(mut child) = self.children.lock().unwrap().remove(component) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_etcd(&self) {
        let env = fs::read_to_string(self.dir.join("cluster.env")).expect("cluster.env");
        let port = env
            .lines()
            .find_map(|l| l.strip_prefix("ETCD_PORT="))
            .expect("ETCD_PORT")
            .trim()
            .to_string();
        let url = format!("http://127.0.0.1:{port}/health");
        wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            http_request("GET", &url, None, None)
                .ok()
                .filter(|r| r.status == 200)
        })
        .unwrap_or_else(|| panic!("etcd not healthy:\n{}", self.log_tail("etcd", 30)));
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self, timeout: Duration) {
        wait_until(timeout, Duration::from_millis(200), || {
            self.try_request("GET", "/readyz", None, None)
                .ok()
                .filter(|r| r.status == 200)
        })
        .unwrap_or_else(|| {
            panic!(
                "kube-apiserver not ready within {timeout:?}:\n{}",
                self.log_tail("kube-apiserver", 40)
            )
        });
    }

    /// Waits until the controller-manager works: its ServiceAccount controller has created
    /// `default/default`.
    pub fn wait_controller_manager(&self) {
        wait_until(Duration::from_secs(120), Duration::from_millis(200), || {
            self.try_get("/api/v1/namespaces/default/serviceaccounts/default")
        })
        .unwrap_or_else(|| {
            panic!(
                "kube-controller-manager did not start:\n{}",
                self.log_tail("kube-controller-manager", 40)
            )
        });
    }

    pub fn api_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    /// The admin kubeconfig (client certificate in `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self, component: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{component}.log"))
    }

    pub fn log_tail(&self, component: &str, n: usize) -> String {
        file_tail(&self.log_path(component), n)
    }

    /// Any request as the admin; `path` is an API path such as `/apis/apps/v1/namespaces/x/deployments`.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> std::io::Result<HttpResponse> {
        let body = body
            .map(|b| serde_json::to_vec(b).expect("serialize body"))
            .unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nAccept: application/json\r\n\
             Content-Length: {}\r\n",
            self.api_port,
            body.len()
        );
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        head.push_str("\r\n");
        https_request(
            &self.tls,
            self.api_port,
            &head,
            &body,
            Duration::from_secs(30),
        )
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> HttpResponse {
        self.try_request(method, path, content_type, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// POST `obj` to the collection `path`; panics unless 2xx. Returns the stored object.
    pub fn create(&self, path: &str, obj: Value) -> Value {
        let resp = self.request("POST", path, Some("application/json"), Some(&obj));
        expect_ok("POST", path, resp)
    }

    /// GET `path`; panics unless 2xx.
    pub fn get(&self, path: &str) -> Value {
        expect_ok("GET", path, self.request("GET", path, None, None))
    }

    /// GET `path`; `None` on 404 or when the server does not answer; panics on other errors.
    pub fn try_get(&self, path: &str) -> Option<Value> {
        let resp = self.try_request("GET", path, None, None).ok()?;
        if resp.status == 404 {
            None
        } else {
            Some(expect_ok("GET", path, resp))
        }
    }

    /// JSON merge patch (`application/merge-patch+json`) of `path`, e.g. `.../NAME/status`; panics unless 2xx.
    pub fn patch_merge(&self, path: &str, patch: Value) -> Value {
        let resp = self.request(
            "PATCH",
            path,
            Some("application/merge-patch+json"),
            Some(&patch),
        );
        expect_ok("PATCH", path, resp)
    }

    pub fn delete(&self, path: &str) -> Value {
        expect_ok("DELETE", path, self.request("DELETE", path, None, None))
    }

    /// Creates the `apps/v1` Deployment `ns/name` at `replicas` (pods labelled `app: name`; the
    /// control plane has no nodes, so none run).
    pub fn create_deployment(&self, ns: &str, name: &str, replicas: i64) {
        self.create(
            &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
            serde_json::json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}},
                                      "spec": {"containers": [{"name": "p", "image": "example/proxy:1"}]}}}
            }),
        );
    }

    /// The `spec.replicas` of the Deployment `ns/name`.
    pub fn deployment_replicas(&self, ns: &str, name: &str) -> i64 {
        self.get(&format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"))["spec"]["replicas"]
            .as_i64()
            .expect("spec.replicas")
    }

    /// The events (events.k8s.io/v1) in `ns` about the object `regarding` with `reason`.
    pub fn events_about(&self, ns: &str, regarding: &str, reason: &str) -> Vec<Value> {
        self.get(&format!("/apis/events.k8s.io/v1/namespaces/{ns}/events"))["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["regarding"]["name"] == regarding && e["reason"] == reason)
            .collect()
    }

    /// Creates namespace `name` (fine if it exists) and waits for its `default` ServiceAccount.
    pub fn create_namespace(&self, name: &str) {
        let resp = self.request(
            "POST",
            "/api/v1/namespaces",
            Some("application/json"),
            Some(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})),
        );
        assert!(
            resp.is_success() || resp.status == 409,
            "create namespace {name}: {} {}",
            resp.status,
            resp.body
        );
        let sa = format!("/api/v1/namespaces/{name}/serviceaccounts/default");
        wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            self.try_get(&sa)
        })
        .unwrap_or_else(|| panic!("namespace {name} got no default ServiceAccount"));
    }

    /// `kubectl --kubeconfig <admin> ARGS` (or another kubeconfig through `--kubeconfig` in `args`).
    pub fn kubectl(&self, args: &[&str]) -> ProcessOutput {
        let kubectl = repo_root().join(".tools/bin/kubectl");
        assert!(
            kubectl.exists(),
            "{} is missing: run scripts/setup.sh",
            kubectl.display()
        );
        let mut cmd = Command::new(kubectl);
        if !args.contains(&"--kubeconfig") {
            cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        }
        cmd.args(args).output().expect("run kubectl")
    }

    /// kubectl that must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `helm ARGS` against this cluster (its own caches under the cluster's directory).
    pub fn helm(&self, args: &[&str]) -> ProcessOutput {
        let helm = repo_root().join(".tools/bin/helm");
        assert!(
            helm.exists(),
            "{} is missing: run scripts/setup.sh",
            helm.display()
        );
        let home = self.dir.join("helm");
        Command::new(helm)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output()
            .expect("run helm")
    }

    /// Installs the CRD from `crds/` (server-side apply) and waits until it is Established.
    pub fn install_crd(&self) {
        let crds = repo_root().join("crds");
        self.kubectl_ok(&[
            "apply",
            "--server-side",
            "--field-manager=prescale-tests",
            "-f",
            &crds.display().to_string(),
        ]);
        // polled here rather than `kubectl wait --for=condition=Established`: kubectl fails at once
        // ("<nil> is of the type <nil>") when it reads the CRD before its status has any condition
        let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD}");
        wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
            let crd = self.try_get(&path)?;
            super::find_condition(&crd, "Established")
                .is_some_and(|c| c["status"] == "True")
                .then_some(())
        })
        .unwrap_or_else(|| panic!("{CRD} was not Established within 60 s: {}", self.get(&path)));
    }

    /// A kubeconfig for ServiceAccount `namespace/name` with a TokenRequest token (`scripts/cluster.sh token`).
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let out = cluster_sh(
            &["token", namespace, name, &self.dir.display().to_string()],
            &[],
        );
        PathBuf::from(out.trim())
    }

    /// A token for ServiceAccount `namespace/name` (TokenRequest, 2 h).
    pub fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let resp = self.create(
            &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"expirationSeconds": 7200}}),
        );
        resp["status"]["token"]
            .as_str()
            .expect("status.token")
            .to_string()
    }

    /// The operator's identity for a test that watches namespace `ns` only: the chart's ServiceAccount, Role
    /// and leader-election Role, rendered by `helm template` (release `prescale` in `ns`, `watchNamespaces:
    /// [ns]`) and applied; then a kubeconfig with a token of that ServiceAccount for `server` (the API server,
    /// or an [`ApiProxy`] in front of it). Run the operator with `--namespaces ns`.
    pub fn operator_kubeconfig(&self, ns: &str, server: Option<&str>) -> PathBuf {
        self.operator_kubeconfig_for(ns, &[ns], server, None)
    }

    /// As [`KubeCluster::operator_kubeconfig`], for a release in `release_ns` watching `watch`, with the
    /// chart's values from `values` (e.g. sources whose settings change the RBAC).
    pub fn operator_kubeconfig_for(
        &self,
        release_ns: &str,
        watch: &[&str],
        server: Option<&str>,
        values: Option<&Path>,
    ) -> PathBuf {
        for ns in std::iter::once(&release_ns).chain(watch) {
            self.create_namespace(ns);
        }
        let chart = repo_root().join("charts/prescale");
        let chart = chart.display().to_string();
        let watch_set = format!("watchNamespaces={{{}}}", watch.join(","));
        let mut args = vec![
            "template",
            "prescale",
            chart.as_str(),
            "--namespace",
            release_ns,
            "--set",
            watch_set.as_str(),
            "--set",
            "leaderElection.enabled=true",
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ];
        let values = values.map(|v| v.display().to_string());
        if let Some(v) = &values {
            args.extend(["-f", v.as_str()]);
        }
        let out = self.helm(&args);
        assert!(
            out.status.success(),
            "helm template: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let manifests = self
            .dir
            .join(format!("rbac-{release_ns}-{}.yaml", self.next_seq()));
        fs::write(&manifests, &out.stdout).expect("write the RBAC manifests");
        self.kubectl_ok(&["apply", "-f", &manifests.display().to_string()]);
        let token = self.service_account_token(release_ns, "prescale");
        let path = self.dir.join(format!(
            "operator-{release_ns}-{}.kubeconfig",
            self.next_seq()
        ));
        self.token_kubeconfig(&path, server.unwrap_or(&self.api_url()), &token, release_ns);
        path
    }

    /// `kubectl auth can-i ARGS` as the identity of `kubeconfig`: true for "yes".
    pub fn can_i(&self, kubeconfig: &Path, args: &[&str]) -> bool {
        let kc = kubeconfig.display().to_string();
        let mut all = vec!["--kubeconfig", kc.as_str(), "auth", "can-i"];
        all.extend_from_slice(args);
        let out = self.kubectl(&all);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            answer == "yes" || answer == "no",
            "kubectl auth can-i {args:?}: {answer} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        answer == "yes"
    }

    /// The identity of [`KubeCluster::operator_kubeconfig`] for `ns` may do what the operator does there
    /// (scale, status, events, its Lease) and nothing beyond: no other namespace, no Secrets, no writes
    /// to the Deployments themselves.
    pub fn assert_namespaced_operator_identity(&self, kubeconfig: &Path, ns: &str) {
        for allowed in [
            &["patch", "deployments", "--subresource=scale", "-n", ns][..],
            &["watch", "predictivescalers.prescale.dev", "-n", ns],
            &[
                "patch",
                "predictivescalers.prescale.dev",
                "--subresource=status",
                "-n",
                ns,
            ],
            &["create", "events.events.k8s.io", "-n", ns],
            &["update", "leases.coordination.k8s.io", "-n", ns],
        ] {
            assert!(
                self.can_i(kubeconfig, allowed),
                "should be allowed: {allowed:?}"
            );
        }
        for refused in [
            &["list", "predictivescalers.prescale.dev", "--all-namespaces"][..],
            &["list", "predictivescalers.prescale.dev", "-n", "default"],
            &[
                "patch",
                "deployments",
                "--subresource=scale",
                "-n",
                "default",
            ],
            &["get", "secrets", "-n", ns],
            &["patch", "deployments", "-n", ns],
            &["delete", "deployments", "-n", ns],
        ] {
            assert!(
                !self.can_i(kubeconfig, refused),
                "must not be allowed: {refused:?}"
            );
        }
    }

    fn next_seq(&self) -> usize {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// A kubeconfig at `path` for `server` (http or https) with a bearer token and this cluster's CA.
    pub fn token_kubeconfig(&self, path: &Path, server: &str, token: &str, namespace: &str) {
        let ca = fs::read(self.dir.join("pki/ca.crt")).expect("ca.crt");
        let ca = base64_encode(&ca);
        let tls = if server.starts_with("https://") {
            format!("\n    certificate-authority-data: {ca}")
        } else {
            String::new()
        };
        fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}{tls}\n\
                 users:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    \
                 user: u\n    namespace: {namespace}\ncurrent-context: c\n"
            ),
        )
        .expect("write kubeconfig");
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        let mut children = self.children.lock().unwrap();
        for c in COMPONENTS.iter().rev() {
            if let Some(mut child) = children.remove(c) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for c in COMPONENTS {
                eprintln!(
                    "\n===== last {LOG_TAIL_LINES} lines of the {c} log =====\n{}",
                    file_tail(&self.log_path(c), LOG_TAIL_LINES)
                );
            }
        }
    }
}

fn expect_ok(method: &str, path: &str, resp: HttpResponse) -> Value {
    assert!(
        resp.is_success(),
        "{method} {path} -> {}: {}",
        resp.status,
        resp.body
    );
    resp.json()
}

/// Removes `dir` once this test binary has exited (the shared cluster lives in a `static`, which is never
/// dropped), unless `PRESCALE_KEEP_TEST_DIRS` is set.
fn reap_after_exit(dir: &Path) {
    if std::env::var_os("PRESCALE_KEEP_TEST_DIRS").is_some() {
        return;
    }
    let script = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; rm -rf '{}'",
        std::process::id(),
        dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

pub fn base64_encode(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
