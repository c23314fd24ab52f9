//! CoreDog's in-cluster side: the admission webhook, the node watcher and the adapters they
//! stand on. `main.rs` only parses arguments and wires these parts together.

pub mod certs;
pub mod demo;
pub mod http;
pub mod node_setup;
pub mod notify;
pub mod telemetry;
pub mod tls;
pub mod watcher;
pub mod webhook;
pub mod webhook_certs;

/// Resolves when the process is asked to stop (SIGTERM from the kubelet, or Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
