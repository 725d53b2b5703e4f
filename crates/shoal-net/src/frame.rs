//! Framing: `[u32 length, big-endian][format version byte][named msgpack Envelope]`.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bumped when the envelope changes incompatibly; a node refuses frames of versions it lacks.
pub const FRAME_FORMAT_VERSION: u8 = 1;

/// A request or response: the request id ties a response to its request in logs, and the
/// timeout tells the receiver how long the sender will still wait, so it can skip dead work.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub id: u64,
    pub timeout_ms: u32,
    pub body: T,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the limit max_frame_bytes = {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("empty frame")]
    Empty,
    #[error("unknown frame format version {0} (this build speaks {FRAME_FORMAT_VERSION})")]
    BadVersion(u8),
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error("stream ended mid-frame")]
    Truncated,
    #[error("i/o: {0}")]
    Io(String),
}

pub async fn write_frame<W, T>(w: &mut W, msg: &Envelope<T>, limit: usize) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let buf = encode_frame(msg, limit)?;
    w.write_all(&buf).await.map_err(|e| FrameError::Io(e.to_string()))
}

pub async fn read_frame<R, T>(r: &mut R, limit: usize) -> Result<Envelope<T>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e.to_string()),
    })?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e.to_string()),
    })?;
    decode_body(&buf)
}

/// Decodes a frame's body (the bytes after the length): the version byte and the envelope.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<Envelope<T>, FrameError> {
    match body.first() {
        None => Err(FrameError::Empty),
        Some(&FRAME_FORMAT_VERSION) => rmp_serde::from_slice(&body[1..]).map_err(|e| FrameError::Decode(e.to_string())),
        Some(&v) => Err(FrameError::BadVersion(v)),
    }
}

/// Decodes one whole frame held in memory, length prefix included, as [`read_frame`] would
/// read it off a stream: for tests and the fuzz targets.
pub fn decode_frame<T: DeserializeOwned>(frame: &[u8], limit: usize) -> Result<Envelope<T>, FrameError> {
    let Some((len, body)) = frame.split_first_chunk::<4>() else {
        return Err(FrameError::Truncated);
    };
    let len = u32::from_be_bytes(*len) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    decode_body(body.get(..len).ok_or(FrameError::Truncated)?)
}

/// Encodes a frame in memory, length prefix included (what [`write_frame`] writes).
pub fn encode_frame<T: Serialize>(msg: &Envelope<T>, limit: usize) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(&[0, 0, 0, 0, FRAME_FORMAT_VERSION]);
    rmp_serde::encode::write_named(&mut buf, msg).map_err(|e| FrameError::Decode(e.to_string()))?;
    let len = buf.len() - 4;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let msg = Envelope {
            id: 7,
            timeout_ms: 100,
            body: vec![1u8, 2, 3],
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &msg, 1024).await.unwrap();
        let back: Envelope<Vec<u8>> = read_frame(&mut buf.as_slice(), 1024).await.unwrap();
        assert_eq!((back.id, back.timeout_ms, back.body), (7, 100, vec![1, 2, 3]));
        assert!(matches!(
            read_frame::<_, Vec<u8>>(&mut buf.as_slice(), 4).await,
            Err(FrameError::TooLarge { limit: 4, .. })
        ));
        let mut big = Vec::new();
        assert!(matches!(
            write_frame(
                &mut big,
                &Envelope {
                    id: 1,
                    timeout_ms: 1,
                    body: vec![0u8; 100]
                },
                10
            )
            .await,
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0, 0],
            vec![0, 0, 0, 0],
            vec![0, 0, 0, 3, 9, 9, 9],
            vec![0, 0, 0, 3, FRAME_FORMAT_VERSION, 0xc1, 0xff],
            vec![0, 0, 0, 10, FRAME_FORMAT_VERSION],
            vec![0xff, 0xff, 0xff, 0xff],
        ];
        for c in cases {
            assert!(
                read_frame::<_, Vec<u8>>(&mut c.as_slice(), 1 << 20).await.is_err(),
                "{c:?}"
            );
        }
    }
}
