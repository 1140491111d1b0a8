//! Frames on a QUIC stream: a cancel-safe reader with a size limit, and a writer.

use fubar_logproto::frame::{self, FrameError};
use quinn::{RecvStream, SendStream};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::MonitorError;

/// Most bytes reserved ahead for a frame body.
const RESERVE_MAX: usize = 1 << 20;

/// Reads length-prefixed postcard frames. The partial frame lives in the struct, so the
/// `next` future may be dropped in a `select!` without losing bytes; memory grows with the
/// bytes received (which QUIC flow control bounds), not with the length a peer announces.
#[derive(Debug)]
pub struct FrameReader {
    max: usize,
    header: [u8; 4],
    have: usize,
    /// The announced body length, once the header is complete.
    len: Option<usize>,
    body: Vec<u8>,
}

impl FrameReader {
    /// A reader refusing bodies longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            header: [0; 4],
            have: 0,
            len: None,
            body: Vec::new(),
        }
    }

    /// Changes the body limit (between frames).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// The next frame; `Ok(None)` if the stream ends cleanly between frames.
    pub async fn next<T: DeserializeOwned>(
        &mut self,
        recv: &mut RecvStream,
    ) -> Result<Option<T>, MonitorError> {
        match self.next_body(recv).await? {
            Some(body) => Ok(Some(frame::decode(&body)?)),
            None => Ok(None),
        }
    }

    /// The next frame's body, undecoded (for a reader that borrows from it); `Ok(None)` if
    /// the stream ends cleanly between frames.
    pub async fn next_body(
        &mut self,
        recv: &mut RecvStream,
    ) -> Result<Option<Vec<u8>>, MonitorError> {
        loop {
            let want = match self.len {
                None => 4 - self.have,
                Some(len) => len - self.body.len(),
            };
            if want > 0 {
                let chunk = recv
                    .read_chunk(want, true)
                    .await
                    .map_err(|e| MonitorError::Stream(e.to_string()))?;
                let Some(chunk) = chunk else {
                    if self.have == 0 && self.len.is_none() {
                        return Ok(None);
                    }
                    return Err(MonitorError::Stream("stream ended inside a frame".into()));
                };
                match self.len {
                    None => {
                        let n = chunk.bytes.len();
                        self.header[self.have..self.have + n].copy_from_slice(&chunk.bytes);
                        self.have += n;
                    }
                    Some(_) => self.body.extend_from_slice(&chunk.bytes),
                }
            }
            if self.len.is_none() && self.have == 4 {
                let len = frame::body_len(self.header, self.max)?;
                // Room for the body up to a bound: what is reserved beyond it grows with the
                // bytes that actually arrive.
                self.body.reserve(len.min(RESERVE_MAX));
                self.len = Some(len);
                continue;
            }
            if let Some(len) = self.len {
                if self.body.len() == len {
                    self.have = 0;
                    self.len = None;
                    return Ok(Some(std::mem::take(&mut self.body)));
                }
            }
        }
    }
}

/// Encodes `value` as one frame and writes it.
pub async fn write_frame<T: Serialize>(
    send: &mut SendStream,
    value: &T,
) -> Result<(), MonitorError> {
    let bytes = frame::encode(value)?;
    send.write_all(&bytes)
        .await
        .map_err(|e| MonitorError::Stream(e.to_string()))
}

/// Whether an error is the peer's fault on the wire (bad frame) rather than the network's.
pub fn is_malformed(e: &MonitorError) -> bool {
    matches!(
        e,
        MonitorError::Frame(FrameError::Malformed(_) | FrameError::TooLarge { .. })
            | MonitorError::Protocol(_)
    )
}
