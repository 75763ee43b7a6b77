//! The two server URLs, checked before a driver sees them, with Postfix-style answers that name
//! the key, the value (password masked) and what is wrong: `redis.url "redis:/127.0.0.1": no
//! host name`.

use super::ConfigError;
use super::render::redact;

fn bad(key: &'static str, url: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue { key, value: shown(url), reason: reason.into() }
}

/// The value with its password masked, also when it does not parse as a URL.
fn shown(text: &str) -> String {
    let masked = redact(text);
    if masked != "(unparsable)" {
        return masked;
    }
    let Some((scheme, rest)) = text.split_once("://") else { return text.to_owned() };
    match rest.split_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user.to_owned(), |(name, _)| format!("{name}:********"));
            format!("{scheme}://{user}@{host}")
        }
        None => text.to_owned(),
    }
}

/// A URL parse error in words.
fn parse_error(e: url::ParseError) -> String {
    match e {
        url::ParseError::EmptyHost => "no host name".into(),
        other => other.to_string(),
    }
}

/// `redis://[user:pass@]host[:port][/db]`, `redis+unix:///path` or `unix:///path`.
pub(super) fn check_redis(key: &'static str, text: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(text).map_err(|e| bad(key, text, parse_error(e)))?;
    match url.scheme() {
        "rediss" => {
            return Err(bad(
                key,
                text,
                "TLS (rediss:) is not built in; use redis: on loopback or a private network, or redis+unix:",
            ));
        }
        "redis" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(bad(key, text, "no host name"));
            }
        }
        "redis+unix" | "unix" => {
            if url.path().is_empty() || url.path() == "/" {
                return Err(bad(key, text, "no socket path"));
            }
        }
        other => {
            return Err(bad(key, text, format!("scheme {other}: is not redis: or redis+unix:")));
        }
    }
    // Whatever else the driver refuses (a database that is not a number...).
    redis::Client::open(text).map(|_| ()).map_err(|e| bad(key, text, e.to_string()))
}

/// `mysql://user:pass@host[:port]/database` (or `mariadb://`; `?socket=/path` for a socket).
pub(super) fn check_database(key: &'static str, text: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(text).map_err(|e| bad(key, text, parse_error(e)))?;
    if !matches!(url.scheme(), "mysql" | "mariadb") {
        return Err(bad(key, text, format!("scheme {}: is not mysql: or mariadb:", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad(key, text, "no host name (mysql://user:password@localhost/dbispconfig)"));
    }
    if url.path().trim_start_matches('/').is_empty() {
        return Err(bad(key, text, "no database name (mysql://user:password@localhost/dbispconfig)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_named_with_what_is_wrong() {
        for (text, said) in [
            ("redis:/127.0.0.1", "redis.url \"redis:/127.0.0.1\": no host name"),
            ("http://x", "redis.url \"http://x/\": scheme http: is not redis: or redis+unix:"),
            (
                "rediss://h/1",
                "redis.url \"rediss://h/1\": TLS (rediss:) is not built in; use redis: on loopback or a private network, or redis+unix:",
            ),
            ("redis+unix://", "redis.url \"redis+unix://\": no socket path"),
            ("redis://:secret@/0", "redis.url \"redis://:********@/0\": no host name"),
        ] {
            let e = check_redis("redis.url", text).expect_err(text);
            assert_eq!(e.to_string(), said);
        }
        for ok in ["redis://127.0.0.1:6379/0", "redis://:pw@h/1", "redis+unix:///run/redis/redis.sock"] {
            check_redis("redis.url", ok).expect(ok);
        }
        let e = check_database("database.url", "mysql:/x").expect_err("no host");
        assert_eq!(
            e.to_string(),
            "database.url \"mysql:/x\": no host name (mysql://user:password@localhost/dbispconfig)"
        );
        let e = check_database("database.url", "mysql://u:pw@localhost").expect_err("no db");
        assert!(
            e.to_string().starts_with("database.url \"mysql://u:********@localhost\": no database name"),
            "{e}"
        );
        check_database("database.url", "mysql://u:pw@localhost/dbispconfig").expect("good");
    }
}
