//! A proxy on loopback in front of a server that answers each connection at a limited rate:
//! a store whose connections are each limited (by distance, or by the store's own policy), so
//! that how many connections stream at once decides how fast a download goes. Used by
//! `list-fetch --connection-rate`; loopback alone hides this, every connection being as fast
//! as the CPUs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Stops accepting and drops every connection when dropped.
pub struct ThrottlingProxy {
    pub address: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for ThrottlingProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl ThrottlingProxy {
    /// Forwards connections to `upstream`; answers go back at `bytes_per_second` each.
    pub async fn start(upstream: SocketAddr, bytes_per_second: f64) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let accepting = tokio::spawn(async move {
            // Owned here, so that aborting this task ends every connection too.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => {
                            connections.spawn(relay(client, upstream, bytes_per_second));
                        }
                        // Out of descriptors, say: the connections open go on.
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(Self { address, accepting })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, bytes_per_second: f64) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_in, mut client_out) = client.into_split();
    let (mut server_in, mut server_out) = server.into_split();
    let requests = async {
        let _ = tokio::io::copy(&mut client_in, &mut server_out).await;
        let _ = server_out.shutdown().await;
    };
    let answers = async {
        if paced_copy(&mut server_in, &mut client_out, bytes_per_second)
            .await
            .is_err()
        {
            // The server's side broke: the client hears of it rather than waiting.
            let _ = client_out.shutdown().await;
        }
    };
    let _ = tokio::join!(requests, answers);
}

/// Copies `from` to `to`, each read taking at least its share of a second at `rate`: a reader
/// that stops for a while earns no burst when it goes on.
async fn paced_copy(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    rate: f64,
) -> std::io::Result<()> {
    // About 10 ms of answer per read: the timer's millisecond does not cap the rate.
    let chunk = ((rate / 100.0) as usize).clamp(16 * 1024, 1024 * 1024);
    let mut buffer = vec![0u8; chunk];
    loop {
        let read = from.read(&mut buffer).await?;
        if read == 0 {
            return to.shutdown().await;
        }
        let began = Instant::now();
        to.write_all(&buffer[..read]).await?;
        let share = Duration::from_secs_f64(read as f64 / rate);
        if let Some(left) = share.checked_sub(began.elapsed()) {
            tokio::time::sleep(left).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers come at the rate, to two connections at once: 400 KB at 2 MB/s takes 0.2 s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_are_paced() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_address = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = upstream.accept().await {
                tokio::spawn(async move {
                    let _ = socket.write_all(&vec![7u8; 400_000]).await;
                });
            }
        });
        let proxy = ThrottlingProxy::start(upstream_address, 2e6).await.unwrap();
        let began = Instant::now();
        let download = || async {
            let mut socket = TcpStream::connect(proxy.address).await.unwrap();
            let mut got = Vec::new();
            socket.read_to_end(&mut got).await.unwrap();
            got.len()
        };
        let (first, second) = tokio::join!(download(), download());
        let took = began.elapsed();
        assert_eq!((first, second), (400_000, 400_000));
        assert!(
            took >= Duration::from_millis(190),
            "faster than the rate: {took:?}"
        );
    }
}
