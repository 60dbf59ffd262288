//! The signals the daemon answers: SIGTERM and SIGINT stop it, SIGHUP reloads its config.
//!
//! Handlers are installed when these functions are called, not when their futures are first polled:
//! a signal that arrives while the daemon is still starting must not kill it (SIGHUP's default action
//! is to terminate) nor be lost.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGTERM and SIGINT, as they come: the first stops the daemon, a second cuts the grace period short.
pub struct Terminations {
    term: Signal,
    int: Signal,
}

impl Terminations {
    /// Installs the SIGTERM and SIGINT handlers.
    pub fn new() -> std::io::Result<Terminations> {
        Ok(Terminations {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next SIGTERM or SIGINT, by name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            Some(()) = self.term.recv() => "SIGTERM",
            Some(()) = self.int.recv() => "SIGINT",
            // Both streams end only with the runtime; then there is nothing left to stop.
            else => std::future::pending().await,
        }
    }
}

/// A stream of SIGHUPs.
pub struct Hangups(Signal);

impl Hangups {
    /// Installs the SIGHUP handler.
    pub fn new() -> std::io::Result<Hangups> {
        Ok(Hangups(signal(SignalKind::hangup())?))
    }

    /// The next SIGHUP. Several that arrive before this is awaited count as one: one reload reads the
    /// newest file anyway.
    pub async fn recv(&mut self) {
        // `None` only if the signal driver is gone with the runtime; then never resolve.
        if self.0.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}
