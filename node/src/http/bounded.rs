//! The HTTP endpoint's listener, bounded: at most `http.max_connections` connections at once
//! (one more is closed at accept), and a connection that goes `http.idle_timeout_secs`
//! without writing a response (a request trickled in byte by byte, or a keep-alive left
//! idle) is closed. `axum::serve` has neither bound, and without them whoever reaches the
//! port could hold sockets open until the node runs out of file descriptors, which its MQTT
//! clients need.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Refusals are reported at most this often (with how many there were since the last report).
const REFUSAL_REPORT_EVERY: Duration = Duration::from_secs(10);

/// A `TcpListener` that hands out at most `max` connections at once.
#[derive(Debug)]
pub(crate) struct BoundedListener {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    max: usize,
    idle: Duration,
    refused: usize,
    last_report: Option<Instant>,
    /// The settings section it is bounded by (`http`, `console`), for the logs.
    name: &'static str,
}

impl BoundedListener {
    pub(crate) fn new(
        name: &'static str,
        listener: TcpListener,
        max: usize,
        idle: Duration,
    ) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            listener,
            permits: Arc::new(Semaphore::new(max)),
            max,
            idle,
            refused: 0,
            last_report: None,
            name,
        }
    }

    /// Counts one connection closed at accept; a `warning` now and then says how many.
    fn refuse(&mut self, peer: SocketAddr) {
        self.refused += 1;
        let now = Instant::now();
        if self
            .last_report
            .is_some_and(|t| now.duration_since(t) < REFUSAL_REPORT_EVERY)
        {
            return;
        }
        tracing::warn!(target: "warning", %peer, refused = self.refused, limit = self.max,
            listener = self.name, "HTTP connection refused: {}.max_connections are open", self.name);
        self.refused = 0;
        self.last_report = Some(now);
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, say: wait a moment rather than spin.
                    tracing::warn!(target: "warning", error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let _ = stream.set_nodelay(true);
                    return (BoundedStream::new(stream, permit, self.idle), peer);
                }
                // Dropped here: the socket closes at once.
                Err(_) => self.refuse(peer),
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// One accepted connection: it holds its permit until dropped, and fails its reads and
/// writes once it has gone `idle` without writing.
#[derive(Debug)]
pub(crate) struct BoundedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl BoundedStream {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, idle: Duration) -> Self {
        Self {
            stream,
            _permit: permit,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// An error once the deadline passed (and the task is woken when it does).
    fn expired(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "nothing written within the idle timeout",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for BoundedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Pending => match this.expired(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            ready => ready,
        }
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write(cx, data);
        match written {
            Poll::Ready(Ok(n)) if n > 0 => {
                // A response is going out: the connection is in use.
                let next = tokio::time::Instant::now() + this.idle;
                this.deadline.as_mut().reset(next);
                Poll::Ready(Ok(n))
            }
            Poll::Pending => match this.expired(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn one_connection_over_the_limit_is_closed_and_a_freed_slot_is_reused() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = BoundedListener::new("http", tcp, 1, Duration::from_secs(60));
        let first = TcpStream::connect(addr).await.unwrap();
        let (held, _) = listener.accept().await;
        // The second one is accepted by the OS and closed by the listener.
        let mut second = TcpStream::connect(addr).await.unwrap();
        let third = TcpStream::connect(addr);
        let accept = tokio::spawn(async move {
            let (io, _) = listener.accept().await;
            io
        });
        let mut byte = [0u8; 1];
        assert_eq!(second.read(&mut byte).await.unwrap(), 0, "closed at accept");
        drop((held, first));
        let third = third.await.unwrap();
        let io = accept.await.unwrap();
        assert_eq!(io.stream.peer_addr().unwrap(), third.local_addr().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_response_is_closed_at_its_deadline_and_writes_extend_it() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = BoundedListener::new("http", tcp, 4, Duration::from_secs(30));
        let _client = TcpStream::connect(addr).await.unwrap();
        let (mut io, _) = listener.accept().await;
        tokio::time::advance(Duration::from_secs(20)).await;
        io.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        // 20 s after the write: still open.
        tokio::time::advance(Duration::from_secs(20)).await;
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf)).await;
        assert!(read.is_err(), "nothing to read and not yet idle: {read:?}");
        // 30 s after it: closed.
        tokio::time::advance(Duration::from_secs(10)).await;
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
