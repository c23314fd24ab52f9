//! The endpoints every CoreDog server has: `/healthz`, `/readyz` and `/metrics` (Prometheus
//! text format).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

/// A listener on `address`. `[::]` is every address of both families (a pod of an IPv6-only
/// or dual-stack cluster is reached on its IPv6 address, one of an IPv4 cluster on its IPv4
/// one), whatever the node's `net.ipv6.bindv6only`; on a node without IPv6 it is `0.0.0.0`.
pub async fn listen(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let any_ipv6 = matches!(address.ip(), IpAddr::V6(ip) if ip.is_unspecified());
    if !any_ipv6 {
        return tokio::net::TcpListener::bind(address).await;
    }
    match dual_stack(address) {
        Ok(listener) => Ok(listener),
        // The kernel has no IPv6 (`ipv6.disable=1`).
        Err(err) if err.raw_os_error() == Some(rustix::io::Errno::AFNOSUPPORT.raw_os_error()) => {
            let ipv4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), address.port());
            tracing::info!(%address, %ipv4, "no IPv6 on this node; listening on IPv4 only");
            tokio::net::TcpListener::bind(ipv4).await
        }
        Err(err) => Err(err),
    }
}

fn dual_stack(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// Whether the process is ready to serve; flipped by its owner.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct OpsState {
    registry: Arc<Registry>,
    readiness: Readiness,
}

/// `/healthz`, `/readyz` and `/metrics` over `registry`.
pub fn ops_routes(registry: Arc<Registry>, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(OpsState {
            registry,
            readiness,
        })
}

async fn readyz(State(state): State<OpsState>) -> axum::response::Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ok").into_response()
    } else {
        // Not ready, or stopping: the connection is not kept for another request.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONNECTION, "close")],
            "not ready",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "metrics encoding failed".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[::]` takes connections of both families, whatever `net.ipv6.bindv6only` says.
    #[tokio::test]
    async fn any_ipv6_address_is_both_families() {
        let listener = listen("[::]:0".parse().unwrap()).await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut clients = vec!["127.0.0.1"];
        if address.is_ipv6() {
            assert!(!socket2::SockRef::from(&listener).only_v6().unwrap());
            clients.push("::1");
        }
        let expected = clients.len();
        let accepting = tokio::spawn(async move {
            for _ in 0..expected {
                listener.accept().await.unwrap();
            }
        });
        for client in clients {
            let to = SocketAddr::new(client.parse().unwrap(), address.port());
            tokio::net::TcpStream::connect(to).await.unwrap();
        }
        accepting.await.unwrap();
    }
}
