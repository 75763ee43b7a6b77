//! Fuzzes the request decoder: arbitrary bytes, fed in chunks whose sizes come from the input
//! itself, must never panic, and what the decoder keeps between reads stays within one line.
#![no_main]

use bytes::BytesMut;
use email_ratelimit::protocol::{Decoder, MAX_LINE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let chunk = usize::from(split).max(1);
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.len() <= MAX_LINE, "kept {} bytes", buf.len());
    }
});
