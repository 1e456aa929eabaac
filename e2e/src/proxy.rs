//! A TCP proxy on loopback that a test can cut and restore, or stall and resume: the way to take
//! one process's path to Kafka, S3 or the API server away (or hold a request in flight) without
//! touching the shared testbed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

/// Forwards every connection on `addr()` to the target while not cut.
pub struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    /// Connections refused or dropped while cut: proof that the cut was felt.
    refused: Arc<AtomicU64>,
    /// While true, bytes are read but not forwarded (requests hang in flight).
    stalled: watch::Sender<bool>,
    /// Bytes that arrived while stalled: proof that something was in flight.
    held: Arc<AtomicU64>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `target` (`host:port`) on a free loopback port.
    pub async fn start(target: &str) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy")?;
        let port = listener.local_addr()?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (stalled, stall_rx) = watch::channel(false);
        let held = Arc::new(AtomicU64::new(0));
        let target = target.to_string();
        let accept = {
            let (cut, refused, connections) = (cut.clone(), refused.clone(), connections.clone());
            let held = held.clone();
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        refused.fetch_add(1, Ordering::SeqCst);
                        drop(inbound);
                        continue;
                    }
                    let target = target.clone();
                    let (stall, held) = (stall_rx.clone(), held.clone());
                    let handle = tokio::spawn(async move {
                        if let Ok(outbound) = TcpStream::connect(&target).await {
                            let (ir, iw) = inbound.into_split();
                            let (or, ow) = outbound.into_split();
                            tokio::join!(
                                pump(ir, ow, stall.clone(), held.clone()),
                                pump(or, iw, stall, held)
                            );
                        }
                    });
                    let mut c = connections.lock().await;
                    c.retain(|h| !h.is_finished());
                    c.push(handle);
                }
            })
        };
        Ok(Proxy {
            port,
            cut,
            refused,
            stalled,
            held,
            connections,
            accept,
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drops every open connection and refuses new ones until [`restore`](Self::restore).
    pub async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for h in self.connections.lock().await.drain(..) {
            h.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Connections refused while cut.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Holds every byte in either direction until [`resume`](Self::resume): requests in flight
    /// (and new ones) hang, connections stay open.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }

    /// Bytes that arrived while stalled.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }
}

/// Copies one direction of a connection, holding the bytes while stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
    held: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if *stalled.borrow() {
            held.fetch_add(n as u64, Ordering::SeqCst);
        }
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(mut c) = self.connections.try_lock() {
            for h in c.drain(..) {
                h.abort();
            }
        }
    }
}
