//! The HTTP API's listener: counts each accepted connection against its client's
//! `max_connections_per_client`, and hands the verdict to the request handlers.
//!
//! A connection past the limit is still accepted and served, but every request on it is
//! answered `429` and the connection closed: a client learns why, where a reset would look
//! like a network fault and invite an immediate retry.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use shoal_net::client_api::ApiError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::admission::{Admission, Slot};

pub struct AdmittingListener {
    inner: TcpListener,
    admission: Arc<Admission>,
}

impl AdmittingListener {
    pub fn new(inner: TcpListener, admission: Arc<Admission>) -> Self {
        Self { inner, admission }
    }
}

/// An accepted connection and its slot (released when the connection closes), or the refusal.
pub struct AdmittedStream {
    stream: TcpStream,
    slot: Result<Slot, Arc<ApiError>>,
}

impl Listener for AdmittingListener {
    type Io = AdmittedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // TcpListener's own accept logs and retries transient errors (EMFILE sleeps a second).
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        let _ = stream.set_nodelay(true);
        let slot = self.admission.connection(addr.ip()).map_err(Arc::new);
        (AdmittedStream { stream, slot }, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
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

impl AsyncRead for AdmittedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AdmittedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
