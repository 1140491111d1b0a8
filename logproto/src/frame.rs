//! Length-prefixed postcard frames: a big-endian `u32` body length, then the body.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest frame body accepted by default (admin requests and replies are small).
pub const MAX_FRAME: usize = 16 << 20;

/// A frame that cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The body does not decode as the expected type.
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
    /// The announced length is over the limit.
    #[error("frame of {size} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Announced size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// Encodes `value` as one frame.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let body = postcard::to_allocvec(value)?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        size: body.len(),
        max: u32::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The body length announced by a 4-byte header, checked against `max`.
pub fn body_len(header: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let size = u32::from_be_bytes(header) as usize;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    Ok(size)
}

/// Decodes one frame body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(postcard::from_bytes(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::AdminRequest;

    #[test]
    fn round_trip_and_limits() {
        let req = AdminRequest::AccountUpdate {
            name: "romeo".into(),
            password: "1234".into(),
        };
        let bytes = encode(&req).unwrap();
        let len = body_len(bytes[..4].try_into().unwrap(), MAX_FRAME).unwrap();
        assert_eq!(len, bytes.len() - 4);
        assert_eq!(decode::<AdminRequest>(&bytes[4..]).unwrap(), req);
        assert!(body_len([0xff, 0xff, 0xff, 0xff], MAX_FRAME).is_err());
        assert!(decode::<AdminRequest>(&[0xff, 0xff]).is_err());
    }
}
