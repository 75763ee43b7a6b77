//! The cache file of the last good database read (`[database] cache_file`): written atomically
//! after a good read that changed something, read at start, so a restart while MariaDB is down
//! or slow enforces the database's caps instead of the config file's or none.
//!
//! It records which database settings it came from; a file from other settings (another
//! server, other queries) is ignored rather than trusted.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::caps::CapTableBuilder;
use super::{DatabaseLimits, DbCap};
use crate::config::{DatabaseSettings, Layout, MAX_CAP};
use crate::sender;
use crate::window::{Rate, Window};

const VERSION: u32 = 1;

/// A cache file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a limits cache: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: written for other database settings ({found}); ignored")]
    OtherSource { path: PathBuf, found: String },
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    /// The database settings it was read with (password masked).
    source: String,
    /// Unix seconds of the read.
    saved: i64,
    global: Option<u64>,
    default_mailbox: Option<u64>,
    fingerprint: u64,
    /// `null`: the default caps; a cap as `"N/<window>"`, or a number of a day (first files).
    mailboxes: Vec<(String, Option<SavedCap>)>,
    /// Aggregate domain caps (erl-columns), `"N/<window>"`.
    #[serde(default)]
    domains: Vec<(String, String)>,
    /// The mailboxes whose cap is inherited from a default policy (erl-columns).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    inherited: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum SavedCap {
    Daily(u64),
    Rate(String),
    /// Caps over several windows (erl-columns: several rows for one address).
    Rates(Vec<String>),
}

impl SavedCap {
    fn read(&self) -> Result<Vec<Rate>, String> {
        match self {
            Self::Daily(limit) => Ok(vec![Rate::rcpt(*limit, Window::Day)]),
            Self::Rate(text) => Ok(vec![Rate::parse(text, MAX_CAP)?]),
            Self::Rates(texts) => texts.iter().map(|t| Rate::parse(t, MAX_CAP)).collect(),
        }
    }

    fn write(rates: &[Rate]) -> Self {
        match rates {
            [one] => Self::Rate(one.to_string()),
            more => Self::Rates(more.iter().map(ToString::to_string).collect()),
        }
    }
}

/// What identifies the database a cache file belongs to.
#[must_use]
pub fn source(settings: &DatabaseSettings) -> String {
    match settings.layout {
        Layout::ErTables => format!(
            "{} server_id={} global_query={:?} mailbox_query={:?}",
            crate::config::redact(&settings.url),
            settings.server_id,
            settings.global_query,
            settings.mailbox_query
        ),
        Layout::ErlColumns => format!(
            "{} server_id={} layout=erl-columns master={}",
            crate::config::redact(&settings.url),
            settings.server_id,
            settings.master_url.as_deref().map_or_else(|| "-".into(), crate::config::redact)
        ),
    }
}

/// Reads the cache file; `Ok(None)` when there is none.
///
/// # Errors
/// [`SavedError`] when it exists but cannot be read, is not a cache file, or belongs to other
/// database settings.
pub fn load(path: &Path, settings: &DatabaseSettings) -> Result<Option<(DatabaseLimits, i64)>, SavedError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SavedError::Io { path: path.to_owned(), source }),
    };
    let format = |reason: String| SavedError::Format { path: path.to_owned(), reason };
    let file: File = serde_json::from_slice(&text).map_err(|e| format(e.to_string()))?;
    if file.version != VERSION {
        return Err(format(format!("version {}", file.version)));
    }
    let expected = source(settings);
    if file.source != expected {
        return Err(SavedError::OtherSource { path: path.to_owned(), found: file.source });
    }
    let mut builder = CapTableBuilder::with_capacity(file.mailboxes.len());
    let inherited: std::collections::HashSet<&str> = file.inherited.iter().map(String::as_str).collect();
    for (email, cap) in &file.mailboxes {
        let mailbox = sender::normalize(email).map_err(|e| format(format!("{email:?}: {e}")))?;
        let cap: DbCap =
            cap.as_ref().map(SavedCap::read).transpose().map_err(|e| format(format!("{email}: {e}")))?;
        builder.push_as(&mailbox, cap, inherited.contains(email.as_str()));
    }
    let domains = file
        .domains
        .iter()
        .map(|(d, r)| {
            Rate::parse(r, MAX_CAP).map(|r| (d.clone(), r)).map_err(|e| format(format!("{d}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let limits = DatabaseLimits {
        global: file.global,
        default_mailbox: file.default_mailbox,
        mailboxes: Arc::new(builder.build()),
        domains,
        fingerprint: file.fingerprint,
    };
    Ok(Some((limits, file.saved)))
}

/// Writes the cache file atomically: a temporary file in the same directory, synced, renamed
/// over the old one. A crash leaves the old file or the new one, never half of one.
///
/// # Errors
/// [`SavedError::Io`] when the directory is not writable or the disk is full.
pub fn save(
    path: &Path,
    settings: &DatabaseSettings,
    limits: &DatabaseLimits,
    now: i64,
) -> Result<(), SavedError> {
    let io = |source| SavedError::Io { path: path.to_owned(), source };
    let file = File {
        version: VERSION,
        source: source(settings),
        saved: now,
        global: limits.global,
        default_mailbox: limits.default_mailbox,
        fingerprint: limits.fingerprint,
        mailboxes: limits
            .mailboxes
            .iter()
            .map(|(e, cap)| (e.to_owned(), cap.as_deref().map(SavedCap::write)))
            .collect(),
        domains: limits.domains.iter().map(|(d, r)| (d.clone(), r.to_string())).collect(),
        inherited: limits
            .mailboxes
            .iter()
            .filter(|(e, _)| limits.mailboxes.inherited(e))
            .map(|(e, _)| e.to_owned())
            .collect(),
    };
    let text = serde_json::to_vec(&file).map_err(|e| io(std::io::Error::other(e)))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir, path).map_err(io)?;
    let result =
        tmp.1.write_all(&text).and_then(|()| tmp.1.sync_all()).and_then(|()| std::fs::rename(&tmp.0, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp.0);
        return Err(io(e));
    }
    Ok(())
}

/// A new file beside `path`, readable by its owner and group only (it lists mailboxes).
fn tempfile_in(dir: &Path, path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().map_or_else(|| "limits".into(), |n| n.to_string_lossy().into_owned());
    // A name of its own per write: two writers never share (nor truncate) one temporary file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o640).open(&tmp)?;
    Ok((tmp, file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::caps::CapTableBuilder;
    use crate::sender::normalize;

    fn settings(url: &str) -> DatabaseSettings {
        crate::config::from_toml(&format!("[database]\nurl = \"{url}\""))
            .expect("valid")
            .database
            .expect("database")
    }

    fn limits() -> DatabaseLimits {
        let mut b = CapTableBuilder::default();
        b.push(&normalize("a@x.org").expect("valid"), Some(vec![Rate::rcpt(3, Window::Day)]));
        b.push(&normalize("b@xn--bcher-kva.example").expect("valid"), None);
        b.push(&normalize("c@x.org").expect("valid"), Some(vec![Rate::rcpt(20, Window::HOUR)]));
        let two = vec![Rate::rcpt(1000, Window::Day), Rate::rcpt(2, Window::HOUR)];
        b.push(&normalize("d@x.org").expect("valid"), Some(two));
        DatabaseLimits {
            global: Some(5000),
            default_mailbox: None,
            mailboxes: Arc::new(b.build()),
            domains: vec![("example.com".into(), Rate::rcpt(500, Window::HOUR))],
            fingerprint: 42,
        }
    }

    #[test]
    fn round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("limits.json");
        let s = settings("mysql://erl:secret@localhost/dbispconfig");
        assert!(load(&path, &s).expect("no file is fine").is_none());
        save(&path, &s, &limits(), 1_700_000_000).expect("save");
        let (back, saved) = load(&path, &s).expect("load").expect("present");
        assert_eq!((back, saved), (limits(), 1_700_000_000));
        let mut other = limits();
        other.global = Some(7);
        save(&path, &s, &other, 1_700_000_060).expect("save again");
        assert_eq!(load(&path, &s).expect("load").expect("present").0.global, Some(7));
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("ls").flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("limits.json")], "no temporary file left");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("secret"), "{text}");
    }

    /// Issue 20 item 14: two writers at once (a reload and the periodic refresh) each get a
    /// whole file: neither truncates the other's temporary file, every save succeeds, and the
    /// file always reads back as one of the two.
    #[test]
    fn concurrent_saves_never_mix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("limits.json");
        let s = settings("mysql://erl@localhost/dbispconfig");
        let mut other = limits();
        other.global = Some(7);
        std::thread::scope(|scope| {
            for which in [limits(), other.clone()] {
                let (path, s) = (&path, &s);
                scope.spawn(move || {
                    for i in 0..200 {
                        save(path, s, &which, i).expect("every save succeeds");
                    }
                });
            }
        });
        let (back, _) = load(&path, &s).expect("a whole file").expect("present");
        assert!(back == limits() || back == other);
    }

    #[test]
    fn a_file_for_other_settings_or_garbage_is_not_trusted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("limits.json");
        save(&path, &settings("mysql://erl:pw@localhost/a"), &limits(), 1).expect("save");
        let e = load(&path, &settings("mysql://erl:pw@localhost/b")).expect_err("other database");
        assert!(matches!(e, SavedError::OtherSource { .. }), "{e}");
        std::fs::write(&path, "{\"version\": 1, \"trunc").expect("write");
        assert!(matches!(
            load(&path, &settings("mysql://erl:pw@localhost/a")),
            Err(SavedError::Format { .. })
        ));
    }

    #[test]
    fn a_file_with_daily_numbers_still_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("limits.json");
        let s = settings("mysql://erl:pw@localhost/a");
        let text = serde_json::json!({"version": 1, "source": source(&s), "saved": 5, "global": 100,
            "default_mailbox": null, "fingerprint": 1, "mailboxes": [["a@x.org", 7], ["b@x.org", null], ["c@x.org", "5/15m"]]});
        std::fs::write(&path, text.to_string()).expect("write");
        let (back, _) = load(&path, &s).expect("load").expect("present");
        let get = |m: &str| back.mailboxes.get(&normalize(m).expect("valid"));
        assert_eq!(get("a@x.org"), Some(Some(vec![Rate::rcpt(7, Window::Day)])));
        assert_eq!(get("b@x.org"), Some(None));
        assert_eq!(get("c@x.org").flatten().map(|r| r[0].to_string()), Some("5/15m".into()));
    }

    #[test]
    fn an_unwritable_directory_is_an_error_not_a_panic() {
        let s = settings("mysql://erl:pw@localhost/a");
        let e = save(Path::new("/nonexistent/dir/limits.json"), &s, &limits(), 1).expect_err("no dir");
        assert!(e.to_string().contains("/nonexistent/dir/limits.json"), "{e}");
    }
}
