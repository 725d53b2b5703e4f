//! The HTTP API's listener: counts each accepted connection against its client's
//! `max_connections_per_client`, and hands the verdict to the request handlers. With
//! `listen.http_tls_cert` it also terminates TLS.
//!
//! A connection past the limit is still accepted and served, but every request on it is
//! answered `429` and the connection closed: a client learns why, where a reset would look
//! like a network fault and invite an immediate retry.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use shoal_net::client_api::ApiError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::admission::{Admission, Slot};

/// How long a client has to finish its TLS handshake; its connection slot is held meanwhile.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the HTTP server to pick them up.
const HANDSHAKEN_QUEUE: usize = 256;

pub struct AdmittingListener {
    local: SocketAddr,
    source: Source,
}

enum Source {
    Plain {
        inner: TcpListener,
        admission: Arc<Admission>,
    },
    /// TLS handshakes run on their own tasks, so one slow client cannot stall the accept loop;
    /// finished ones arrive here.
    Tls(mpsc::Receiver<(AdmittedStream, SocketAddr)>),
}

impl AdmittingListener {
    /// Plain HTTP, or HTTPS with `tls`. Must be called within the tokio runtime.
    pub fn new(inner: TcpListener, admission: Arc<Admission>, tls: Option<TlsAcceptor>) -> std::io::Result<Self> {
        let local = inner.local_addr()?;
        let source = match tls {
            None => Source::Plain { inner, admission },
            Some(acceptor) => {
                let (tx, rx) = mpsc::channel(HANDSHAKEN_QUEUE);
                tokio::spawn(handshakes(inner, admission, acceptor, tx));
                Source::Tls(rx)
            }
        };
        Ok(Self { local, source })
    }
}

async fn handshakes(
    mut inner: TcpListener,
    admission: Arc<Admission>,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(AdmittedStream, SocketAddr)>,
) {
    loop {
        let (stream, addr) = tokio::select! {
            // The server stopped (its listener, holding the receiver, was dropped).
            _ = tx.closed() => return,
            accepted = Listener::accept(&mut inner) => accepted,
        };
        let _ = stream.set_nodelay(true);
        // Counted before the handshake, so a flood of slow handshakes hits the limit too.
        let slot = admission.connection(addr.ip()).map_err(Arc::new);
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let io = Io::Tls(Box::new(tls));
                    let _ = tx.send((AdmittedStream { io, slot }, addr)).await;
                }
                Ok(Err(e)) => debug!(%addr, error = %e, "TLS handshake failed on the HTTP port"),
                Err(_) => debug!(%addr, "TLS handshake timed out on the HTTP port"),
            }
        });
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection and its slot (released when the connection closes), or the refusal.
pub struct AdmittedStream {
    io: Io,
    slot: Result<Slot, Arc<ApiError>>,
}

impl Listener for AdmittingListener {
    type Io = AdmittedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match &mut self.source {
            Source::Plain { inner, admission } => {
                // TcpListener's own accept logs and retries transient errors (EMFILE sleeps).
                let (stream, addr) = Listener::accept(inner).await;
                let _ = stream.set_nodelay(true);
                let slot = admission.connection(addr.ip()).map_err(Arc::new);
                let io = Io::Plain(stream);
                (AdmittedStream { io, slot }, addr)
            }
            Source::Tls(rx) => match rx.recv().await {
                Some(next) => next,
                // The handshake task ended, which happens only once the server stopped.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// What every request learns of its connection: the client's address, and the refusal if the
/// connection is over its client's limit.
#[derive(Clone, Debug)]
pub struct ClientConn {
    pub addr: SocketAddr,
    pub refused: Option<Arc<ApiError>>,
}

impl Connected<IncomingStream<'_, AdmittingListener>> for ClientConn {
    fn connect_info(stream: IncomingStream<'_, AdmittingListener>) -> Self {
        ClientConn {
            addr: *stream.remote_addr(),
            refused: stream.io().slot.as_ref().err().cloned(),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().io {
            Io::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Io::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for AdmittedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for AdmittedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}
