//! A cluster with a real node, for the tests where pods must really run: `scripts/cluster.sh up`
//! (the control plane, containerd, kube-scheduler, a kubelet, pods on the bridge `prescale0`) and
//! `scripts/image.sh` (the operator's and the demo gateway's images, loaded into the node). The same
//! commands a user runs, so the tests check them too. `down` runs on drop and removes what the node
//! made (containers, mounts, network namespaces, the bridge).
//!
//! One node per machine (the bridge and its addresses are fixed): [`NodeCluster::up`] holds a lock
//! for the value's life, so the tests of a binary that start nodes take turns.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cluster::KubeCluster;
use super::tempdir::TestDir;
use super::{repo_root, wait_until};

/// The node's address on its bridge (scripts/cluster.sh): pods and this machine both reach it.
pub const NODE_IP: &str = "10.244.0.1";

/// The images `scripts/image.sh` built and loaded, by reference.
pub struct Images {
    pub operator: String,
    pub gateway: String,
    /// How long building both and loading them took.
    pub build_time: Duration,
}

pub struct NodeCluster {
    pub kube: KubeCluster,
    dir: PathBuf,
    /// How long `cluster.sh up` took, node included.
    pub up_time: Duration,
    _turn: MutexGuard<'static, ()>,
    _owned: TestDir,
}

fn script(name: &str, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts").join(name))
        .args(args)
        .env("PRESCALE_NODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{name}: {e}"));
    assert!(
        out.status.success(),
        "scripts/{name} {} failed ({}). The node needs root and what scripts/setup.sh installs \
         (containerd, runc, containernetworking-plugins, socat); these tests are not skipped.\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl NodeCluster {
    /// `scripts/cluster.sh up DIR` with its node, waiting for the node to be Ready.
    pub fn up() -> NodeCluster {
        static TURN: Mutex<()> = Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let owned = TestDir::new("node-cluster");
        let dir = owned.path().join("cluster");
        let t = Instant::now();
        script("cluster.sh", &["up", &dir.display().to_string()]);
        let up_time = t.elapsed();
        eprintln!(
            "[harness] cluster with a node up in {up_time:.2?} ({})",
            dir.display()
        );
        NodeCluster {
            kube: KubeCluster::attach(dir.clone(), None),
            dir,
            up_time,
            _turn: turn,
            _owned: owned,
        }
    }

    /// `scripts/image.sh --debug DIR`: both images from the debug binaries, loaded into the node.
    pub fn build_images(&self) -> Images {
        let t = Instant::now();
        let out = script("image.sh", &["--debug", &self.dir.display().to_string()]);
        let find = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("scripts/image.sh printed no {key}<reference>:\n{out}"))
                .to_string()
        };
        Images {
            operator: find("operator="),
            gateway: find("gateway="),
            build_time: t.elapsed(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Prometheus with Kubernetes service discovery that `scripts/build_k8s.sh node` built
    /// beside the kubelet (Debian's has none).
    pub fn prometheus_binary(&self) -> PathBuf {
        let env = std::fs::read_to_string(self.dir.join("cluster.env")).expect("cluster.env");
        let bin = env
            .lines()
            .find_map(|l| l.strip_prefix("NODE_BIN="))
            .expect("NODE_BIN in cluster.env");
        Path::new(bin.trim()).join("prometheus")
    }

    /// The pods of `ns` matching `selector` (a label selector), as the API server lists them.
    pub fn pods(&self, ns: &str, selector: &str) -> Vec<Value> {
        let list = self.kube.get(&format!(
            "/api/v1/namespaces/{ns}/pods?labelSelector={}",
            super::url_encode(selector)
        ));
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `n` pods of `ns` matching `selector` are Ready; their objects.
    pub fn wait_ready_pods(
        &self,
        ns: &str,
        selector: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        wait_until(timeout, Duration::from_millis(250), || {
            let ready: Vec<Value> = self
                .pods(ns, selector)
                .into_iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && pod_ready(p))
                .collect();
            (ready.len() == n).then_some(ready)
        })
        .unwrap_or_else(|| {
            panic!(
                "{n} pods {selector} in {ns} were not Ready within {timeout:?}: {:#}\nkubelet: {}",
                Value::Array(self.pods(ns, selector)),
                self.kube.log_tail("kubelet", 20)
            )
        })
    }
}

/// The pod's Ready condition is True.
pub fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/cluster.sh"))
            .args(["down", &self.dir.display().to_string()])
            .output();
        if let Ok(out) = out
            && !out.status.success()
        {
            eprintln!(
                "[harness] cluster.sh down: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The processes of this machine whose command line starts with `argv` (containers' processes
/// are the host's too): their PIDs.
pub fn pids_running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(&want))
        })
        .collect()
}

/// The process of pod `pod` whose command line starts with `argv`: the one whose container's
/// `/etc/hostname` (which the runtime mounts from the pod's sandbox) names the pod.
pub fn pod_process(pod: &str, argv: &[&str]) -> Option<u32> {
    pids_running(argv).into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/root/etc/hostname"))
            .is_ok_and(|h| h.trim() == pod)
    })
}

/// A process's real, effective, saved and filesystem user IDs (`Uid:` of /proc/PID/status).
pub fn process_uids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|ids| {
            ids.split_whitespace()
                .filter_map(|i| i.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The mount options of `/` as the process sees it (its container's root filesystem).
pub fn root_mount_options(pid: u32) -> String {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    // fields: id parent major:minor root mount-point options ...; the last mount on / wins
    info.lines()
        .rev()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(4) == Some(&"/")).then(|| f.get(5).copied().unwrap_or_default().to_string())
        })
        .unwrap_or_default()
}
