//! A mock Kubernetes API server for the plugin's commands: a kube `Client` over
//! `tower_test::mock`, answering through a closure and recording every request, as kube-rs's
//! controller example does in its fixtures.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kubectl_coredog::output::Console;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// One request the API server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub body: Value,
}

impl Recorded {
    /// `GET /api/v1/...`, without the query.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                index += 2;
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8(out).unwrap()
}

async fn record(request: Request<Body>) -> Recorded {
    let (parts, body) = request.into_parts();
    let query = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect();
    let bytes = body.collect_bytes().await.unwrap();
    Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query,
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap().to_owned()),
        body: if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        },
    }
}

/// What the mock answers: a status and a JSON body.
pub type Answer = (u16, Value);

/// A `Status` object, as the API server sends with errors.
pub fn status(code: u16, reason: &str, message: &str) -> Answer {
    (
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": if code < 400 { "Success" } else { "Failure" },
            "message": message, "reason": reason, "code": code
        }),
    )
}

pub fn not_found(what: &str) -> Answer {
    status(404, "NotFound", &format!("{what} not found"))
}

pub fn ok(body: Value) -> Answer {
    (200, body)
}

/// A list response.
pub fn list(kind: &str, items: Vec<Value>) -> Answer {
    ok(
        json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

/// Starts a mock API server that answers each request with `answer`, and records them. The
/// handle yields the requests once the client (and every clone of it) is dropped.
pub fn api_server(
    answer: impl Fn(&Recorded) -> Answer + Send + 'static,
) -> (Client, JoinHandle<Vec<Recorded>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let mut log = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let recorded = record(request).await;
            let (code, body) = answer(&recorded);
            let response = Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap();
            send.send_response(response);
            log.push(recorded);
        }
        log
    });
    (Client::new(service, "default"), server)
}

/// What a command printed.
#[derive(Debug, Default)]
pub struct Captured {
    pub out: Vec<u8>,
    pub err: Vec<u8>,
}

impl Captured {
    pub fn console(&mut self) -> Console<'_> {
        Console {
            out: &mut self.out,
            err: &mut self.err,
        }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8(self.out.clone()).unwrap()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8(self.err.clone()).unwrap()
    }
}
