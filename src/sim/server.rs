//! Runs an axum router on its own OS thread and tokio runtime.
//!
//! A dedicated runtime (rather than `tokio::spawn` on the caller's) is what lets the simulator be
//! used from sync `#[test]`s, from `#[tokio::test]`s with a current-thread runtime, and from
//! `auditd demo` alike, and lets `Drop` stop it without needing an async context.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;

use axum::Router;
use tokio::sync::oneshot;

/// A server running on its own thread; dropping it stops the server and joins the thread.
pub(crate) struct ServerHandle {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// Binds `127.0.0.1:0`, starts serving `router`, and returns once the listener is bound.
    ///
    /// # Panics
    /// If the runtime cannot be built or the loopback listener cannot be bound.
    pub(crate) fn spawn(name: &str, router: Router) -> ServerHandle {
        let (addr_tx, addr_rx) = mpsc::channel::<std::io::Result<SocketAddr>>();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = addr_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = addr_tx.send(listener.local_addr());
                    let server = tokio::spawn(async move {
                        let _ = axum::serve(listener, router).await;
                    });
                    // Either an explicit shutdown or the handle being dropped without one.
                    let _ = shutdown_rx.await;
                    server.abort();
                    // Awaiting the aborted task drops the listener before Drop returns, so the
                    // port is closed by then.
                    let _ = server.await;
                });
                // Connection tasks (possibly sleeping in a Delay fault) are cancelled, not awaited.
                rt.shutdown_background();
            })
            .unwrap_or_else(|e| panic!("sim: cannot spawn the {name} thread: {e}"));
        let addr = match addr_rx.recv() {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => panic!("sim: {name} cannot listen on 127.0.0.1: {e}"),
            Err(_) => panic!("sim: the {name} thread died before binding"),
        };
        ServerHandle {
            addr,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// The bound loopback address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
