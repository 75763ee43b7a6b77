//! `[database] layout = "erl-columns"`: the caps the ISPConfig extension
//! `LightNetAI/ispconfig-email-ratelimit` stores in ISPConfig's own tables (`server`,
//! `mail_domain`, `mail_user`) and in its `email_ratelimit` table, resolved as
//! `ISPCONFIG-ERL-COLUMNS.md` says: explicit rows first, then the mailbox's mode, then its
//! domain's, then the server's default, bounded by `erl_default_user_out` for mailboxes that
//! inherit. Outbound only; intervals other than the panel's six are an hour.
//!
//! [`resolve`] is pure (rows in, caps out); [`read`] fetches the rows of one server.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::mysql::{MySqlConnection, MySqlRow};

use super::sql::{LimitsError, int_column};
use crate::config::MAX_CAP;
use crate::sender;
use crate::window::{Rate, Window, strictest};

/// The queries, in the order they run (`?` is the server id). The account `install.sh db-user
/// --layout erl-columns` creates may read exactly these columns.
pub const QUERIES: [&str; 4] = [
    "SELECT erl_enabled, erl_out_limit, erl_out_interval, erl_default_user_out FROM server WHERE server_id = ?",
    "SELECT domain, erl_limit_mode, erl_out_limit, erl_out_interval FROM mail_domain WHERE server_id = ? AND active = 'y'",
    "SELECT email, erl_limit_mode, erl_out_limit, erl_out_interval FROM mail_user WHERE server_id = ? AND email <> ''",
    "SELECT source, type, `interval`, `limit`, active FROM email_ratelimit WHERE server_id = ?",
];

/// `server`: the switch and the default of a mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ServerRow {
    pub enabled: bool,
    pub out_limit: u64,
    pub out_interval: u64,
    pub default_user_out: u64,
}

/// One policy row of `mail_domain` or `mail_user`: its mode (`global`/`domain`, `unlimited`,
/// `custom`) and its own numbers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyRow {
    /// The domain, or the mailbox's address.
    pub name: String,
    pub mode: String,
    pub out_limit: u64,
    pub out_interval: u64,
}

/// One row of `email_ratelimit`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExplicitRow {
    /// An address, or `@domain`.
    pub source: String,
    /// `in`, `out` or `both`.
    pub direction: String,
    pub interval: u64,
    pub limit: u64,
    pub active: bool,
}

/// Everything one read returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Rows {
    /// `None`: no row for this server id.
    pub server: Option<ServerRow>,
    pub domains: Vec<PolicyRow>,
    pub mailboxes: Vec<PolicyRow>,
    pub explicit: Vec<ExplicitRow>,
}

impl Rows {
    /// A hash of everything read, to skip rebuilding when nothing changed.
    #[must_use]
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }
}

/// The resolved caps: mailbox caps (one per window, longest first) and domain aggregates (one
/// entry per domain and window), names normalized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub mailboxes: Vec<(sender::Mailbox, Vec<Rate>)>,
    /// The mailboxes of `mailboxes` whose cap is inherited (their domain's or the server's
    /// default policy): a learned allowance may raise it.
    pub inherited: std::collections::HashSet<sender::Mailbox>,
    pub domains: Vec<(String, Rate)>,
    /// Rows whose address or domain could not be used.
    pub skipped: usize,
}

/// The panel's intervals (seconds) as windows; anything else is an hour, as the extension does.
#[must_use]
pub fn window(interval_secs: u64) -> Window {
    match interval_secs {
        60 => Window::Minutes(1),
        300 => Window::Minutes(5),
        900 => Window::Minutes(15),
        21_600 => Window::Minutes(360),
        86_400 => Window::Day,
        _ => Window::HOUR,
    }
}

/// `limit / interval`, or no cap for a limit of 0.
fn cap(limit: u64, interval: u64) -> Option<Rate> {
    (limit > 0).then(|| Rate::rcpt(limit.min(MAX_CAP), window(interval)))
}

/// The rules of `ISPCONFIG-ERL-COLUMNS.md`, for one server's rows.
#[must_use]
pub fn resolve(rows: &Rows) -> Resolved {
    let mut out = Resolved::default();
    let Some(server) = rows.server.as_ref().filter(|s| s.enabled) else { return out };
    // 2. Explicit rows: an address's are its only caps; a domain's are aggregate caps. Several
    // rows for one source: the strictest per window, whatever order they come in.
    let mut explicit: HashMap<sender::Mailbox, Vec<Rate>> = HashMap::new();
    let mut aggregate: HashMap<String, Vec<Rate>> = HashMap::new();
    for row in &rows.explicit {
        let outbound = matches!(row.direction.as_str(), "out" | "both");
        let Some(rate) = cap(row.limit, row.interval).filter(|_| row.active && outbound) else { continue };
        let source = row.source.trim();
        if let Some(domain) = source.strip_prefix('@') {
            match sender::normalize_domain(domain) {
                Ok(d) => aggregate.entry(d).or_default().push(rate),
                Err(_) => out.skipped += 1,
            }
        } else {
            match sender::normalize(source) {
                Ok(m) => explicit.entry(m).or_default().push(rate),
                Err(_) => out.skipped += 1,
            }
        }
    }
    for (domain, rates) in aggregate {
        out.domains.extend(strictest(rates).into_iter().map(|r| (domain.clone(), r)));
    }
    out.domains.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.window.minutes().cmp(&a.1.window.minutes())));
    // 3. The domain's policy for the mailboxes that inherit.
    let server_default = cap(server.out_limit, server.out_interval);
    let mut domains: HashMap<String, Option<Rate>> = HashMap::new();
    for d in &rows.domains {
        let Ok(name) = sender::normalize_domain(&d.name) else {
            out.skipped += 1;
            continue;
        };
        let policy = match d.mode.as_str() {
            "unlimited" => None,
            "custom" => cap(d.out_limit, d.out_interval),
            _ => server_default,
        };
        domains.insert(name, policy);
    }
    for m in &rows.mailboxes {
        let Ok(mailbox) = sender::normalize(&m.name) else {
            out.skipped += 1;
            continue;
        };
        if explicit.contains_key(&mailbox) {
            continue;
        }
        let inherits = !matches!(m.mode.as_str(), "unlimited" | "custom");
        let own = match m.mode.as_str() {
            "unlimited" => None,
            "custom" => cap(m.out_limit, m.out_interval),
            _ => {
                let inherited =
                    mailbox.domain().and_then(|d| domains.get(d).copied()).unwrap_or(server_default);
                // The server's "default per mailbox" bounds a larger inherited cap.
                inherited.map(|r| match server.default_user_out {
                    0 => r,
                    bound => Rate { limit: r.limit.min(bound), ..r },
                })
            }
        };
        if let Some(rate) = own {
            if inherits {
                out.inherited.insert(mailbox.clone());
            }
            out.mailboxes.push((mailbox, vec![rate]));
        }
    }
    out.mailboxes.extend(explicit.into_iter().map(|(m, rates)| (m, strictest(rates))));
    out
}

/// Reads one server's rows: `server`, `mail_domain` and `mail_user` from `conn`, and
/// `email_ratelimit` from `master` (the same connection when `None`). A missing
/// `email_ratelimit` table reads as no rows (returned as `true` so the caller can log it once).
///
/// # Errors
/// [`LimitsError`] on a connection, query or column fault.
pub async fn read(
    conn: &mut MySqlConnection,
    master: Option<&mut MySqlConnection>,
    server_id: u32,
) -> Result<(Rows, bool), LimitsError> {
    let mut rows = Rows::default();
    let server = sqlx::query(QUERIES[0]).bind(server_id).fetch_optional(&mut *conn).await?;
    rows.server = server
        .map(|r| -> Result<ServerRow, LimitsError> {
            Ok(ServerRow {
                enabled: text(&r, 0)? == "y",
                out_limit: int_column(&r, 1)?.unwrap_or(0),
                out_interval: int_column(&r, 2)?.unwrap_or(3600),
                default_user_out: int_column(&r, 3)?.unwrap_or(0),
            })
        })
        .transpose()?;
    let domains = "SELECT domain, erl_limit_mode, erl_out_limit, erl_out_interval FROM mail_domain \
                   WHERE server_id = ? AND active = 'y'";
    rows.domains = policies(conn, domains, server_id).await?;
    let mailboxes = "SELECT email, erl_limit_mode, erl_out_limit, erl_out_interval FROM mail_user \
                     WHERE server_id = ? AND email <> ''";
    rows.mailboxes = policies(conn, mailboxes, server_id).await?;
    let explicit =
        "SELECT source, type, `interval`, `limit`, active FROM email_ratelimit WHERE server_id = ?";
    let on = master.unwrap_or(conn);
    let mut missing = false;
    let mut stream = sqlx::query(explicit).bind(server_id).fetch(&mut *on);
    loop {
        match stream.try_next().await {
            Ok(Some(r)) => rows.explicit.push(ExplicitRow {
                source: text(&r, 0)?,
                direction: text(&r, 1)?,
                interval: int_column(&r, 2)?.unwrap_or(3600),
                limit: int_column(&r, 3)?.unwrap_or(0),
                active: text(&r, 4)? == "y",
            }),
            Ok(None) => break,
            // ER_NO_SUCH_TABLE: the extension's table is not installed (or not here).
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42S02") => {
                missing = true;
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((rows, missing))
}

async fn policies(
    conn: &mut MySqlConnection,
    query: &'static str,
    server_id: u32,
) -> Result<Vec<PolicyRow>, LimitsError> {
    let mut out = Vec::new();
    let mut stream = sqlx::query(query).bind(server_id).fetch(&mut *conn);
    while let Some(r) = stream.try_next().await? {
        out.push(PolicyRow {
            name: text(&r, 0)?,
            mode: text(&r, 1)?,
            out_limit: int_column(&r, 2)?.unwrap_or(0),
            out_interval: int_column(&r, 3)?.unwrap_or(3600),
        });
    }
    Ok(out)
}

/// A text or enum column (NULL reads as empty).
fn text(row: &MySqlRow, i: usize) -> Result<String, LimitsError> {
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return Ok(v.unwrap_or_default());
    }
    row.try_get::<Option<Vec<u8>>, _>(i)
        .map(|v| String::from_utf8_lossy(&v.unwrap_or_default()).into_owned())
        .map_err(|e| LimitsError::Column { column: i, reason: e.to_string() })
}

#[cfg(test)]
mod tests;
