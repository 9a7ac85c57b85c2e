//! Endpoints in front of (or instead of) a Prometheus that misbehave on purpose: one that never
//! answers, a bearer-token gate, and a proxy told to fail.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::http::read_request_head;

/// A TCP listener that accepts connections and never answers: a source slower than any timeout.
pub struct BlackHole {
    port: u16,
}

impl BlackHole {
    pub fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream); // kept open, never read or written
            }
        });
        BlackHole { port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// One request the [`AuthProxy`] saw.
#[derive(Debug, Clone)]
pub struct ProxiedRequest {
    pub path: String,
    /// Whether `Authorization: Bearer <token>` matched.
    pub authorized: bool,
    /// The request headers, lower-case names, with `authorization` left out.
    pub headers: Vec<(String, String)>,
}

/// A bearer-token gate in front of a real Prometheus, like kube-rbac-proxy or an OAuth proxy: it answers 401
/// unless `Authorization: Bearer <token>` matches, and forwards the request otherwise (one request per connection,
/// so every request is checked).
pub struct AuthProxy {
    port: u16,
    token: std::sync::Arc<Mutex<String>>,
    seen: std::sync::Arc<Mutex<Vec<ProxiedRequest>>>,
}

impl AuthProxy {
    pub fn start(upstream: &str, token: &str) -> AuthProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let token = std::sync::Arc::new(Mutex::new(token.to_string()));
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (t, s, up) = (token.clone(), seen.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (t, s, up) = (t.clone(), s.clone(), up.clone());
                std::thread::spawn(move || {
                    let _ = Self::serve(stream, &up, &t, &s);
                });
            }
        });
        AuthProxy { port, token, seen }
    }

    fn serve(
        mut client: TcpStream,
        upstream: &str,
        token: &Mutex<String>,
        seen: &Mutex<Vec<ProxiedRequest>>,
    ) -> std::io::Result<()> {
        let Some(text) = read_request_head(&mut client)? else {
            return Ok(());
        };
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let want = format!("Bearer {}", token.lock().unwrap());
        let mut authorized = false;
        let mut headers = Vec::new();
        let mut forward = format!("{request_line}\r\n");
        for l in lines.filter(|l| !l.is_empty()) {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "authorization" {
                authorized = v == want;
                continue;
            }
            if k == "connection" {
                continue;
            }
            forward.push_str(&format!("{k}: {v}\r\n"));
            headers.push((k, v));
        }
        forward.push_str("connection: close\r\n\r\n");
        seen.lock().unwrap().push(ProxiedRequest {
            path,
            authorized,
            headers,
        });
        if !authorized {
            client.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nUnauthorized\n",
            )?;
            return Ok(());
        }
        let mut up = TcpStream::connect(upstream)?;
        up.write_all(forward.as_bytes())?;
        std::io::copy(&mut up, &mut client)?;
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Accept only this token from now on (a rotation).
    pub fn set_token(&self, token: &str) {
        *self.token.lock().unwrap() = token.to_string();
    }

    pub fn seen(&self) -> Vec<ProxiedRequest> {
        self.seen.lock().unwrap().clone()
    }
}

/// A proxy in front of a real Prometheus that can be told to misbehave: `forward` (pass
/// through), `500` (HTTP 500), `garbage` (200 with a body that is not JSON), `slow` (answer
/// nothing for 60 s). One request per connection.
pub struct FaultProxy {
    port: u16,
    mode: std::sync::Arc<Mutex<String>>,
    requests: std::sync::Arc<AtomicUsize>,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mode = std::sync::Arc::new(Mutex::new("forward".to_string()));
        let requests = std::sync::Arc::new(AtomicUsize::new(0));
        let (m, r, up) = (mode.clone(), requests.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (m, up) = (m.lock().unwrap().clone(), up.clone());
                r.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let _ = Self::serve(stream, &up, &m);
                });
            }
        });
        FaultProxy {
            port,
            mode,
            requests,
        }
    }

    fn serve(mut client: TcpStream, upstream: &str, mode: &str) -> std::io::Result<()> {
        let Some(text) = read_request_head(&mut client)? else {
            return Ok(());
        };
        let mut lines = text.split("\r\n");
        let mut forward = format!("{}\r\n", lines.next().unwrap_or_default());
        let mut length = 0usize;
        for l in lines.filter(|l| !l.is_empty()) {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let k = k.trim().to_ascii_lowercase();
            if k == "connection" {
                continue;
            }
            if k == "content-length" {
                length = v.trim().parse().unwrap_or(0);
            }
            forward.push_str(&format!("{k}: {}\r\n", v.trim()));
        }
        forward.push_str("connection: close\r\n\r\n");
        let mut body = vec![0u8; length];
        client.read_exact(&mut body)?;
        let reply = |client: &mut TcpStream, status: &str, body: &str| {
            client.write_all(
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
        };
        match mode {
            "500" => reply(&mut client, "500 Internal Server Error", "internal error\n"),
            "garbage" => reply(&mut client, "200 OK", "<html>this is not JSON{{"),
            "slow" => {
                std::thread::sleep(Duration::from_secs(60));
                Ok(())
            }
            _ => {
                let mut up = TcpStream::connect(upstream)?;
                up.write_all(forward.as_bytes())?;
                up.write_all(&body)?;
                std::io::copy(&mut up, &mut client)?;
                Ok(())
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_mode(&self, mode: &str) {
        *self.mode.lock().unwrap() = mode.to_string();
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
