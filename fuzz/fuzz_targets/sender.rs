//! Fuzzes sender normalization: never panics; a normalized name is stable (normalizing it again
//! changes nothing), bounded, and free of whitespace and control characters.
#![no_main]

use email_ratelimit::sender::{MAX_LEN, normalize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(m) = normalize(raw) {
        assert_eq!(normalize(m.as_str()).as_ref(), Ok(&m), "not idempotent for {raw:?}");
        assert!(m.as_str().len() <= MAX_LEN);
        assert!(!m.as_str().chars().any(|c| c.is_whitespace() || c.is_control()));
    }
});
