//! Helpers shared by the tests: a gateway served in-process, and a small HTTP client.

#![allow(dead_code)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use prescale_demo_gateway::server::{self, Config, Gateway};
use tokio::{sync::oneshot, task::JoinHandle};

/// A gateway serving on 127.0.0.1 (a free port) until `stop` is sent or dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Asks the server to shut down and waits for it.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        let _ = self.stop.take().expect("not stopped yet").send(());
        self.task.await.expect("the server task panicked")
    }
}

pub async fn start(capacity: f64, warmup: Duration, latency: Duration) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = Gateway::new(Config {
        capacity,
        warmup,
        latency,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(listener, gateway.clone(), async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        gateway,
        stop: Some(stop),
        task,
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request; returns its status and body.
pub async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    url: &str,
) -> (StatusCode, String) {
    let body = if method == Method::POST {
        Bytes::from_static(br#"{"model":"m","messages":[]}"#)
    } else {
        Bytes::new()
    };
    let req = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(body))
        .unwrap();
    let resp = client.request(req).await.expect("the gateway answers");
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

pub async fn get(url: &str) -> (StatusCode, String) {
    call(&client(), Method::GET, url).await
}

pub async fn post(url: &str) -> (StatusCode, String) {
    call(&client(), Method::POST, url).await
}

/// The value of the metric line that starts with `series ` (e.g. `gateway_ready`).
pub fn metric(text: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"));
    line[prefix.len()..].trim().parse().unwrap()
}
