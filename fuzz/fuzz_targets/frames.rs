//! The log/exec frame demultiplexer on arbitrary bytes, fed in arbitrary chunks.
//!
//! Input: the first byte picks the chunk size (1..=64), the rest is the stream. Whatever
//! the chunking, the frames decoded and the final outcome must equal those of decoding
//! the whole stream at once, and the payloads must add up to the bytes that were framed.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use nomad_driver_podman::driver::podman::{Frame, FrameDecoder};
use tokio_util::codec::Decoder;

/// Frames, then `Ok(())` for a clean end or the error's text.
fn decode(stream: &[u8], chunk: usize) -> (Vec<Frame>, Result<(), String>) {
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, Err(e.to_string())),
            }
        }
    }
    loop {
        match decoder.decode_eof(&mut buf) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, Ok(())),
            Err(e) => return (frames, Err(e.to_string())),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 64) + 1;
    let whole = decode(stream, stream.len().max(1));
    let chunked = decode(stream, chunk);
    assert_eq!(whole, chunked, "chunk size {chunk}");
    let (frames, end) = whole;
    let payload: usize = frames.iter().map(|f| f.payload.len()).sum();
    // Pieces of a frame above the cap after its first carry no header of their own.
    let headers = frames.iter().filter(|f| !f.continues).count();
    assert!(payload + 8 * headers <= stream.len());
    if end.is_ok() {
        assert_eq!(payload + 8 * headers, stream.len());
    }
});
