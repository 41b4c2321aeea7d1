//! Demultiplexer of podman's framed stdio streams (container logs, non-tty exec).
//!
//! Each frame is an 8-byte header — stream id (0 stdin, 1 stdout, 2 stderr, 3 error channel),
//! three padding bytes, the payload length as a big-endian u32 — followed by the payload.
//! An end of input exactly at a frame boundary is a clean end; anywhere else it is an
//! unexpected EOF.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

const HEADER_LEN: usize = 8;
/// Largest allocation made ahead of a frame's payload arriving.
const MAX_RESERVE: usize = 64 * 1024;

/// Which standard stream a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdin,
    Stdout,
    Stderr,
}

/// One payload of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub stream: StreamKind,
    pub payload: Bytes,
}

/// Why a framed stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("stream id {0} found, 0-3 supported")]
    UnknownStream(u8),
    #[error("stream ended inside a frame ({missing} more bytes expected)")]
    UnexpectedEof { missing: usize },
    /// Podman reported an error on stream 3.
    #[error("podman reported: {0}")]
    ErrorChannel(String),
    #[error("reading the stream: {0}")]
    Io(#[from] std::io::Error),
}

/// `tokio_util` decoder of the frame format; use with `FramedRead`.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    _private: (),
}

impl FrameDecoder {
    pub fn new() -> Self {
        FrameDecoder::default()
    }
}

impl Decoder for FrameDecoder {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < HEADER_LEN {
            src.reserve(HEADER_LEN - src.len());
            return Ok(None);
        }
        let stream = match src[0] {
            0 => Some(StreamKind::Stdin),
            1 => Some(StreamKind::Stdout),
            2 => Some(StreamKind::Stderr),
            3 => None,
            other => return Err(FrameError::UnknownStream(other)),
        };
        let len = u32::from_be_bytes([src[4], src[5], src[6], src[7]]) as usize;
        if src.len() < HEADER_LEN + len {
            // The buffer grows with the data that arrives, not with what a header claims:
            // a corrupt or hostile length must not allocate gigabytes up front.
            src.reserve((HEADER_LEN + len - src.len()).min(MAX_RESERVE));
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(len).freeze();
        match stream {
            Some(stream) => Ok(Some(Frame { stream, payload })),
            None => Err(FrameError::ErrorChannel(
                String::from_utf8_lossy(&payload).trim_end().to_string(),
            )),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => {
                let missing = if src.len() < HEADER_LEN {
                    HEADER_LEN - src.len()
                } else {
                    let len = u32::from_be_bytes([src[4], src[5], src[6], src[7]]) as usize;
                    HEADER_LEN + len - src.len()
                };
                Err(FrameError::UnexpectedEof { missing })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_claiming_4_gib_allocates_only_as_data_arrives() {
        let mut src = BytesMut::from(&[1u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(FrameDecoder::new().decode(&mut src).unwrap().is_none());
        assert!(src.capacity() <= HEADER_LEN + MAX_RESERVE);
    }
    use futures::StreamExt;
    use tokio_util::codec::FramedRead;

    fn frame(id: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![id, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    async fn decode_all(input: Vec<u8>, chunk: usize) -> Vec<Result<Frame, String>> {
        let chunks: Vec<std::io::Result<Bytes>> = input
            .chunks(chunk.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let reader = tokio_util::io::StreamReader::new(futures::stream::iter(chunks));
        FramedRead::new(reader, FrameDecoder::new())
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
            .await
    }

    fn ok(stream: StreamKind, payload: &str) -> Result<Frame, String> {
        Ok(Frame {
            stream,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
        })
    }

    #[tokio::test]
    async fn splits_streams_and_keeps_payloads_verbatim() {
        let mut input = frame(1, b"out\n");
        input.extend(frame(2, b"err without newline"));
        input.extend(frame(0, b"in"));
        let got = decode_all(input, 4096).await;
        assert_eq!(
            got,
            vec![
                ok(StreamKind::Stdout, "out\n"),
                ok(StreamKind::Stderr, "err without newline"),
                ok(StreamKind::Stdin, "in"),
            ]
        );
    }

    #[tokio::test]
    async fn reassembles_frames_split_across_reads() {
        let mut input = frame(1, b"hello world");
        input.extend(frame(2, &[7u8; 3000]));
        for chunk in [1, 3, 7, 8, 9, 1024] {
            let got = decode_all(input.clone(), chunk).await;
            assert_eq!(got.len(), 2, "chunk size {chunk}");
            assert_eq!(got[0], ok(StreamKind::Stdout, "hello world"));
            let second = got[1].as_ref().expect("second frame");
            assert_eq!(second.stream, StreamKind::Stderr);
            assert_eq!(second.payload.len(), 3000);
        }
    }

    #[tokio::test]
    async fn empty_payload_is_a_frame() {
        let got = decode_all(frame(1, b""), 16).await;
        assert_eq!(got, vec![ok(StreamKind::Stdout, "")]);
    }

    #[tokio::test]
    async fn eof_at_boundary_is_a_clean_end() {
        assert!(decode_all(Vec::new(), 16).await.is_empty());
        assert_eq!(decode_all(frame(1, b"x"), 16).await.len(), 1);
    }

    #[tokio::test]
    async fn short_header_is_unexpected_eof() {
        let mut input = frame(1, b"x");
        input.extend([1, 0, 0]);
        let got = decode_all(input, 16).await;
        assert_eq!(got[0], ok(StreamKind::Stdout, "x"));
        let err = got[1].as_ref().expect_err("short header fails");
        assert!(err.contains("inside a frame"), "{err}");
        assert!(err.contains("5 more bytes"), "{err}");
    }

    #[tokio::test]
    async fn short_payload_is_unexpected_eof() {
        let mut input = frame(2, b"abcdef");
        input.truncate(input.len() - 2);
        let got = decode_all(input, 16).await;
        let err = got[0].as_ref().expect_err("short payload fails");
        assert!(err.contains("2 more bytes"), "{err}");
    }

    #[tokio::test]
    async fn error_channel_carries_podmans_message() {
        let mut input = frame(1, b"ok\n");
        input.extend(frame(3, b"exec failed: no such file\n"));
        let got = decode_all(input, 16).await;
        assert_eq!(got[0], ok(StreamKind::Stdout, "ok\n"));
        assert_eq!(
            got[1],
            Err("podman reported: exec failed: no such file".to_string())
        );
    }

    #[tokio::test]
    async fn stream_ids_above_three_are_rejected() {
        let got = decode_all(frame(4, b"?"), 16).await;
        assert_eq!(
            got,
            vec![Err("stream id 4 found, 0-3 supported".to_string())]
        );
    }

    #[test]
    fn padding_bytes_are_ignored() {
        let mut buf = BytesMut::from(&[1u8, 9, 9, 9, 0, 0, 0, 2, b'h', b'i'][..]);
        let f = FrameDecoder::new().decode(&mut buf).expect("decodes");
        assert_eq!(
            f,
            Some(Frame {
                stream: StreamKind::Stdout,
                payload: Bytes::from_static(b"hi")
            })
        );
        assert!(buf.is_empty());
    }
}
