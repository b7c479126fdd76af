//! The issuer's listeners and its reload task: the service listener (plain HTTP behind a
//! router, or TLS with an optional client certificate), the admin listener, and the task that
//! re-reads key material every reload interval and on SIGHUP.
//!
//! Both listeners are built from the listener kit, with the issuer's limits: what a client
//! without a proof may cost (a connection slot, a head, a body, a TLS handshake) is bounded
//! there. A TLS handshake starts only once the client's first byte has arrived, and runs under
//! the connection's first-byte deadline, counting as waiting (so a slot held by a slow
//! handshake can go to a newer connection).

use std::net::SocketAddr;
use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Issuer;
use crate::listener::{self, Limits};

/// A client certificate chain a TLS handshake presented (its key proven by the handshake).
pub type PeerChain = Arc<Vec<CertificateDer<'static>>>;

/// A running issuer: the service listener, the admin listener, the reload task.
#[derive(Debug)]
pub struct Running {
    /// Where the service listens.
    pub addr: SocketAddr,
    /// Where the admin endpoint listens.
    pub admin_addr: SocketAddr,
    /// The service state.
    pub issuer: Arc<Issuer>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    reload: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, stops reloading.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.reload.abort();
    }
}

/// Why the issuer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A bound listener has no local address.
    #[error("the {what} listener has no local address")]
    Listener {
        /// Which.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Serves `issuer` on already bound listeners; re-reads its files every reload interval and
/// when `reload_now` receives (SIGHUP). Dropping the sender leaves the periodic reloads.
pub fn start(
    issuer: Arc<Issuer>,
    listener: TcpListener,
    admin: TcpListener,
    reload_now: tokio::sync::mpsc::Receiver<()>,
) -> Result<Running, StartError> {
    let local = |l: &TcpListener, what| {
        l.local_addr()
            .map_err(|source| StartError::Listener { what, source })
    };
    let addr = local(&listener, "issuer")?;
    let admin_addr = local(&admin, "admin")?;
    let (stop, stopped) = watch::channel(false);
    let until = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let limits = issuer.settings.limits;
    let service = tokio::spawn(serve(
        listener,
        limits,
        issuer.clone(),
        until(stopped.clone()),
    ));
    let admin_issuer = issuer.clone();
    let admin_limits = Limits {
        reads_bodies: false,
        ..limits
    };
    let admin_task = tokio::spawn(listener::accept_until(
        admin,
        admin_limits,
        until(stopped),
        move |accepted, connections| {
            let issuer = admin_issuer.clone();
            connections
                .later()
                .spawn_accepted(accepted, move |req: Request<Incoming>| {
                    let issuer = issuer.clone();
                    async move { issuer.admin_answer(&req) }
                });
        },
    ));
    let reload = tokio::spawn(reloading(issuer.clone(), reload_now));
    Ok(Running {
        addr,
        admin_addr,
        issuer,
        stop,
        tasks: vec![service, admin_task],
        reload,
    })
}

/// Looks at the key material every reload interval, and at once (forced) for each signal.
async fn reloading(issuer: Arc<Issuer>, mut reload_now: tokio::sync::mpsc::Receiver<()>) {
    let interval = issuer.settings.reload_interval;
    let mut signals = true;
    loop {
        let force = tokio::select! {
            () = tokio::time::sleep(interval) => false,
            got = reload_now.recv(), if signals => match got {
                Some(()) => true,
                None => {
                    // Nobody sends any more (a test, or shutting down): periodic only.
                    signals = false;
                    continue;
                }
            },
        };
        let ticking = issuer.clone();
        // Files are read on the blocking pool: a stalled filesystem never holds a worker.
        let _ = tokio::task::spawn_blocking(move || ticking.tick(force)).await;
    }
}

/// The service listener: plain HTTP, or TLS with an optional client certificate.
async fn serve(
    listener: TcpListener,
    limits: Limits,
    issuer: Arc<Issuer>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    listener::accept_until(listener, limits, shutdown, |accepted, connections| {
        let tls = issuer.material.load().tls.clone();
        let issuer = issuer.clone();
        let later = connections.later();
        match tls {
            None => {
                later.spawn_accepted(accepted, move |req| {
                    let issuer = issuer.clone();
                    async move { issuer.handle(req, None).await }
                });
            }
            Some(config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                later.start_accepted(accepted, move |stream| async move {
                    // No TLS state until the client says something.
                    if !listener::first_byte(&stream).await {
                        return None;
                    }
                    let tls = match acceptor.accept(stream).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return None;
                        }
                    };
                    let peer: Option<PeerChain> = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect()));
                    let handler = move |req| {
                        let issuer = issuer.clone();
                        let peer = peer.clone();
                        async move { issuer.handle(req, peer).await }
                    };
                    Some((tls, handler))
                });
            }
        }
    })
    .await;
}
