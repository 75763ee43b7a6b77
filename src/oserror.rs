//! Errors as Postfix writes them: `connect to /path: No such file or directory`, without Rust's
//! ` (os error 2)` tail.

/// The error's text without a trailing ` (os error N)`.
#[must_use]
pub fn plain(error: &dyn std::fmt::Display) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_os_error_number_goes() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(super::plain(&e), "No such file or directory");
        assert_eq!(super::plain(&"no reply in 5 s"), "no reply in 5 s");
    }
}
