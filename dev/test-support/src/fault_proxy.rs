//! A TCP proxy between the SDK and the emulator that can be switched off, so tests can make
//! AWS "go away" and come back without losing the emulator's state.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

/// A running proxy; dropped with the test's runtime.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    endpoint: String,
    down: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`
    /// (`http://host:port`), byte for byte.
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let down = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let (d, r) = (down.clone(), refused.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    r.fetch_add(1, Ordering::SeqCst);
                    drop(inbound); // connection reset: the service is unreachable
                    continue;
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        FaultProxy {
            endpoint,
            down,
            refused,
        }
    }

    /// The proxy's endpoint URL, to use as the SDK's endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Drops every new connection while `down` is true.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// How many connections were dropped.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}
