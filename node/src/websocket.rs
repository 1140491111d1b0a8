//! A WebSocket as a byte stream, so that MQTT over WebSocket (MQTT 5.0 section 6) runs through
//! the same code as MQTT over TCP: the broker's connection driver and the tools' client.
//!
//! Reads yield the payloads of binary frames, concatenated (an MQTT packet may span frames and
//! a frame may hold several packets). Ping frames are answered by tungstenite (on the next
//! read), a close frame ends the stream (answered with a close frame), a text frame is an
//! error. Each write is one binary frame; shutting the writer down sends a close frame.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// What tungstenite allocates to read frames into, and the most it reads at once; small, so an
/// idle connection stays cheap (its default is 128 KiB). It grows for a large frame.
const READ_BUFFER_BYTES: usize = 2048;

/// Framing limits: a frame or a message of at most `max` bytes (checked on the frame header,
/// before its payload is buffered); frames are written as they come.
pub fn config(max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(max.saturating_mul(2))
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// A WebSocket as a byte stream: reads yield the payloads of binary frames, each write is a
/// binary frame.
#[derive(Debug)]
pub struct WsIo<S> {
    ws: WebSocketStream<S>,
    /// What is left of the last binary frame read.
    pending: Bytes,
    /// A close frame came: the stream has ended.
    closed: bool,
}

impl<S> WsIo<S> {
    /// The byte stream over an upgraded WebSocket.
    pub fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            pending: Bytes::new(),
            closed: false,
        }
    }
}

/// A WebSocket error as the driver's read or write error.
fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::Capacity(e) => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("websocket frame too large: {e}"),
        ),
        e => io::Error::new(io::ErrorKind::InvalidData, format!("websocket: {e}")),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                if self.pending.is_empty() {
                    // An empty slice still holds the frame's buffer (tungstenite's read
                    // buffer, which then allocates a new one): let it go, so an idle
                    // connection keeps one read buffer, not two.
                    self.pending = Bytes::new();
                }
                return Poll::Ready(Ok(()));
            }
            if self.closed {
                return Poll::Ready(Ok(()));
            }
            // Each read also sends what tungstenite owes the peer (a pong, a close reply).
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Close(_))) => self.closed = true,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "websocket text frame (MQTT over WebSocket is binary frames only)",
                    )))
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut ws = Pin::new(&mut self.ws);
        ready!(ws.as_mut().poll_ready(cx)).map_err(io_error)?;
        ws.start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}
