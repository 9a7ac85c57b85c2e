//! [`ApiProxy`]: a plain-HTTP proxy in front of a [`KubeCluster`]'s API server that injects
//! [`Fault`]s (delays, error statuses) into matching requests and logs every request, for an
//! operator pointed at it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::json;

use super::{KubeCluster, tls_config};
use crate::support::http::read_request_head;

/// A fault to inject: requests whose method is `method` and whose path contains `path_contains` are
/// held for `delay` and then answered with `status` (a Kubernetes `Status`), `count` times.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: &'static str,
    pub path_contains: String,
    pub status: u16,
    pub reason: &'static str,
    pub delay: Duration,
    pub count: usize,
    /// Answer with this plain-text body instead of a `Status` (what the API server itself
    /// answers for a path nobody serves: [`Fault::not_served`]).
    pub plain_body: Option<&'static str>,
}

impl Fault {
    pub fn new(
        method: &'static str,
        path_contains: &str,
        status: u16,
        reason: &'static str,
    ) -> Fault {
        Fault {
            method,
            path_contains: path_contains.to_string(),
            status,
            reason,
            delay: Duration::ZERO,
            count: 1,
            plain_body: None,
        }
    }

    /// The API server's own answer for a path no API serves (a CRD not installed): a bare
    /// `404 page not found` in plain text, not a `Status`, to every matching request.
    pub fn not_served(method: &'static str, path_contains: &str) -> Fault {
        Fault {
            plain_body: Some("404 page not found\n"),
            count: usize::MAX,
            ..Fault::new(method, path_contains, 404, "NotFound")
        }
    }

    pub fn times(mut self, count: usize) -> Fault {
        self.count = count;
        self
    }

    pub fn after(mut self, delay: Duration) -> Fault {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct ProxyState {
    faults: Vec<Fault>,
    /// "METHOD PATH -> STATUS" of every request, in order, with when it arrived; STATUS is `fwd`
    /// when forwarded.
    log: Vec<(std::time::SystemTime, String)>,
}

/// A plain-HTTP proxy on 127.0.0.1 in front of a cluster's API server (TLS upstream, no client certificate:
/// the client's own `Authorization` header is what authenticates). One request per connection. Requests
/// matching a [`Fault`] are delayed and refused; the others are forwarded as they are, watches included.
pub struct ApiProxy {
    port: u16,
    state: Arc<Mutex<ProxyState>>,
}

impl ApiProxy {
    pub fn start(cluster: &KubeCluster) -> ApiProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let tls = tls_config(&cluster.dir.join("pki"), false);
        let upstream = cluster.api_port;
        let st = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (st, tls) = (st.clone(), tls.clone());
                std::thread::spawn(move || {
                    let _ = Self::serve(stream, upstream, &tls, &st);
                });
            }
        });
        ApiProxy { port, state }
    }

    fn serve(
        mut client: TcpStream,
        upstream: u16,
        tls: &Arc<rustls::ClientConfig>,
        state: &Mutex<ProxyState>,
    ) -> std::io::Result<()> {
        let Some(head) = read_request_head(&mut client)? else {
            return Ok(());
        };
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let mut parts = request_line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut forward = format!("{request_line}\r\n");
        let mut length = 0usize;
        for l in lines.filter(|l| !l.is_empty()) {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let k = k.trim().to_ascii_lowercase();
            if k == "connection" || k == "host" {
                continue;
            }
            if k == "content-length" {
                length = v.trim().parse().unwrap_or(0);
            }
            forward.push_str(&format!("{k}: {}\r\n", v.trim()));
        }
        forward.push_str(&format!(
            "host: 127.0.0.1:{upstream}\r\nconnection: close\r\n\r\n"
        ));
        let mut body = vec![0u8; length];
        client.read_exact(&mut body)?;
        let fault = {
            let mut st = state.lock().unwrap();
            let hit = st
                .faults
                .iter_mut()
                .find(|f| f.count > 0 && f.method == method && path.contains(&f.path_contains));
            let fault = hit.map(|f| {
                f.count -= 1;
                f.clone()
            });
            let outcome = fault
                .as_ref()
                .map_or("fwd".to_string(), |f| f.status.to_string());
            st.log.push((
                std::time::SystemTime::now(),
                format!("{method} {path} -> {outcome}"),
            ));
            fault
        };
        if let Some(f) = fault {
            std::thread::sleep(f.delay);
            if let Some(body) = f.plain_body {
                return client.write_all(
                    format!(
                        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        f.status,
                        f.reason,
                        body.len()
                    )
                    .as_bytes(),
                );
            }
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": format!("injected by the test proxy: {}", f.reason), "reason": f.reason, "code": f.status})
            .to_string();
            return client.write_all(
                format!(
                    "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{status}",
                    f.status,
                    f.reason,
                    status.len()
                )
                .as_bytes(),
            );
        }
        let tcp = TcpStream::connect(("127.0.0.1", upstream))?;
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let conn =
            rustls::ClientConnection::new(tls.clone(), name).map_err(std::io::Error::other)?;
        let mut up = rustls::StreamOwned::new(conn, tcp);
        up.write_all(forward.as_bytes())?;
        up.write_all(&body)?;
        up.flush()?;
        // the response, a watch's stream included, until the server closes
        let mut buf = [0u8; 16 * 1024];
        loop {
            match up.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => client.write_all(&buf[..n])?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the faults to inject.
    pub fn set_faults(&self, faults: Vec<Fault>) {
        self.state.lock().unwrap().faults = faults;
    }

    /// Requests seen so far with this method whose path contains `path_part` (injected faults included).
    pub fn count(&self, method: &str, path_part: &str) -> usize {
        let prefix = format!("{method} ");
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|(_, l)| l.starts_with(&prefix) && l.contains(path_part))
            .count()
    }

    /// Every request so far, "METHOD PATH -> fwd|STATUS".
    pub fn log(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Every request so far with when it arrived.
    pub fn timed_log(&self) -> Vec<(std::time::SystemTime, String)> {
        self.state.lock().unwrap().log.clone()
    }
}
