//! Demultiplexer of podman's framed stdio streams (container logs, non-tty exec).
//!
//! Each frame is an 8-byte header — stream id (0 stdin, 1 stdout, 2 stderr, 3 error channel),
//! three padding bytes, the payload length as a big-endian u32 — followed by the payload.
//! An end of input exactly at a frame boundary is a clean end; anywhere else it is an
//! unexpected EOF.
//!
//! A frame is buffered whole only up to [`MAX_FRAME`] bytes. A larger one (a task can
//! print a line of any length, and podman's logs API sends each line as one frame) is
//! delivered in pieces of at most [`MAX_FRAME`] bytes as they arrive, each with the
//! frame's stream kind; every piece after the first has [`Frame::continues`] set, so a
//! consumer that reads something at the start of a frame (the logs API's timestamp)
//! reads it only once. An error-channel frame is cut at [`MAX_FRAME`] bytes.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

const HEADER_LEN: usize = 8;
/// Largest allocation made ahead of a frame's payload arriving.
const MAX_RESERVE: usize = 64 * 1024;
/// Largest payload buffered before it is delivered (as k8s_file's `MAX_RECORD`).
pub const MAX_FRAME: usize = 1024 * 1024;

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
    /// This payload continues the previous one: a piece of a frame larger than
    /// [`MAX_FRAME`] other than its first.
    pub continues: bool,
}

impl Frame {
    /// A whole frame (or the first piece of one).
    pub fn new(stream: StreamKind, payload: Bytes) -> Frame {
        Frame {
            stream,
            payload,
            continues: false,
        }
    }
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
    /// Inside a frame larger than [`MAX_FRAME`] whose header was consumed.
    large: Option<LargeFrame>,
}

#[derive(Debug)]
struct LargeFrame {
    /// `None`: the error channel, whose first [`MAX_FRAME`] bytes are the message.
    stream: Option<StreamKind>,
    /// Payload bytes of the frame not yet delivered.
    remaining: usize,
    /// Whether a piece of it was delivered already.
    started: bool,
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
        if let Some(large) = &mut self.large {
            let piece = large.remaining.min(MAX_FRAME);
            if src.len() < piece {
                src.reserve((piece - src.len()).min(MAX_RESERVE));
                return Ok(None);
            }
            let payload = src.split_to(piece).freeze();
            large.remaining -= piece;
            let continues = std::mem::replace(&mut large.started, true);
            let stream = large.stream;
            if large.remaining == 0 || stream.is_none() {
                self.large = None;
            }
            return match stream {
                Some(stream) => Ok(Some(Frame {
                    stream,
                    payload,
                    continues,
                })),
                // The message is its first piece; the stream ends with the error.
                None => Err(error_channel(&payload)),
            };
        }
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
        if len > MAX_FRAME {
            src.advance(HEADER_LEN);
            self.large = Some(LargeFrame {
                stream,
                remaining: len,
                started: false,
            });
            return self.decode(src);
        }
        if src.len() < HEADER_LEN + len {
            // The buffer grows with the data that arrives, not with what a header claims:
            // a corrupt or hostile length must not allocate gigabytes up front.
            src.reserve((HEADER_LEN + len - src.len()).min(MAX_RESERVE));
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(len).freeze();
        match stream {
            Some(stream) => Ok(Some(Frame::new(stream, payload))),
            None => Err(error_channel(&payload)),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            // A clean end only between frames: inside a large frame whose header was
            // consumed, the rest of it is missing even with nothing buffered.
            None if src.is_empty() && self.large.is_none() => Ok(None),
            None => {
                let missing = if let Some(large) = &self.large {
                    large.remaining - src.len()
                } else if src.len() < HEADER_LEN {
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

fn error_channel(payload: &[u8]) -> FrameError {
    FrameError::ErrorChannel(String::from_utf8_lossy(payload).trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_inside_a_large_frame_is_an_unexpected_eof() {
        // Found by the frames fuzz target: a header above the cap, then the end.
        let mut src = BytesMut::from(&[2u8, 0, 0, 0, 0, 0x62, 0x63, 0x64][..]);
        let mut decoder = FrameDecoder::new();
        assert!(decoder.decode(&mut src).unwrap().is_none());
        let err = decoder.decode_eof(&mut src).unwrap_err();
        assert!(
            matches!(err, FrameError::UnexpectedEof { missing } if missing == 0x0062_6364),
            "{err}"
        );
    }

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
        Ok(Frame::new(
            stream,
            Bytes::copy_from_slice(payload.as_bytes()),
        ))
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
    async fn frames_above_the_cap_arrive_in_pieces_of_their_stream() {
        let big: Vec<u8> = (0..MAX_FRAME * 2 + 10).map(|i| (i % 251) as u8).collect();
        let mut input = frame(2, &big);
        input.extend(frame(1, b"next"));
        for chunk in [4096, MAX_FRAME + 3] {
            let got = decode_all(input.clone(), chunk).await;
            let got: Vec<Frame> = got.into_iter().map(|f| f.expect("frame")).collect();
            assert_eq!(got.len(), 4, "chunk size {chunk}");
            let sizes: Vec<usize> = got.iter().map(|f| f.payload.len()).collect();
            assert_eq!(sizes, vec![MAX_FRAME, MAX_FRAME, 10, 4]);
            assert!(got[..3].iter().all(|f| f.stream == StreamKind::Stderr));
            let continues: Vec<bool> = got.iter().map(|f| f.continues).collect();
            assert_eq!(continues, vec![false, true, true, false]);
            let joined: Vec<u8> = got[..3].iter().flat_map(|f| f.payload.to_vec()).collect();
            assert_eq!(joined, big);
            assert_eq!(got[3], ok(StreamKind::Stdout, "next").expect("ok"));
        }
    }

    #[test]
    fn a_large_frame_never_buffers_more_than_the_cap() {
        let mut decoder = FrameDecoder::new();
        let mut src = BytesMut::from(&[1u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff][..]);
        let mut delivered = 0usize;
        for _ in 0..3 * 4 {
            // Data arrives in 256 KiB reads; a piece is handed out once the cap is full.
            src.extend_from_slice(&[b'x'; 256 * 1024]);
            assert!(
                src.len() <= HEADER_LEN + MAX_FRAME,
                "buffered {}",
                src.len()
            );
            if let Some(f) = decoder.decode(&mut src).expect("decodes") {
                assert_eq!(f.stream, StreamKind::Stdout);
                assert_eq!(f.payload.len(), MAX_FRAME);
                delivered += f.payload.len();
            }
        }
        assert_eq!(delivered, 3 * MAX_FRAME);
        // An end inside it is an unexpected EOF naming what is missing.
        src.extend_from_slice(b"tail");
        let err = decoder.decode_eof(&mut src).expect_err("cut short");
        let missing = 0xffff_ffff - 3 * MAX_FRAME - 4;
        assert!(
            err.to_string().contains(&format!("{missing} more bytes")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_large_error_channel_frame_is_cut_at_the_cap() {
        let got = decode_all(frame(3, &vec![b'e'; MAX_FRAME + 5]), 65536).await;
        let err = got[0].as_ref().expect_err("error channel");
        assert_eq!(err.len(), "podman reported: ".len() + MAX_FRAME);
        assert_eq!(got.len(), 1);
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
            Some(Frame::new(StreamKind::Stdout, Bytes::from_static(b"hi")))
        );
        assert!(buf.is_empty());
    }
}
