//! A plain Redis client for work off the request path, on the daemon's own key schema: one
//! multiplexed connection, no pool and no script (the request path is [`super::redis::RedisStore`]).
//! The admin commands read and write through it (counter values, today's top senders, raises,
//! locks, resets, violations, held website mail), and so does the daemon's own background work
//! (learning's fold after midnight, the metrics scrape, the lock index repair at start). Its users
//! decide what to ask; only this module (and its siblings `fold.rs`, `held.rs`) speaks Redis for
//! them.

use chrono::{NaiveDate, NaiveDateTime};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use super::StoreError;
use super::keys::{KeySchema, LockedBy, Who};
use super::protect::Lock;
use super::target::Target;
use crate::config::RedisSettings;
use crate::sender::Mailbox;
use crate::window::{Rate, Unit, Window};

/// A plain Redis client: one connection for an admin command or a background task.
pub struct RedisClient {
    pub(super) conn: MultiplexedConnection,
    pub(super) keys: KeySchema,
}

/// Which senders `top` lists: they share `erl:top:DATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderKind {
    /// Authenticated SMTP senders.
    Smtp,
    /// Local users (website mail, `local:NAME@server`).
    Local,
}

impl RedisClient {
    /// Connects (interactive commands may wait longer than the request path).
    ///
    /// # Errors
    /// When Redis is unreachable or the URL is invalid.
    pub async fn open(settings: &RedisSettings) -> Result<Self, StoreError> {
        let timeout = settings.timeout.max(std::time::Duration::from_secs(2));
        let conn = Target::new(settings)?.connect(timeout).await?;
        Ok(Self { conn, keys: KeySchema::new(&settings.key_prefix) })
    }

    /// The values of `who`'s counters over `windows` (each with its unit) in the windows holding
    /// `local` (0 when absent or unreadable).
    ///
    /// # Errors
    /// Redis faults.
    pub async fn values(
        &mut self,
        local: NaiveDateTime,
        windows: &[(Window, Unit)],
        who: Who<'_>,
    ) -> Result<Vec<u64>, StoreError> {
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> =
            windows.iter().map(|&(w, u)| self.keys.window(local, w, u, who).to_string()).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut self.conn).await?;
        Ok(values.into_iter().map(|v| v.and_then(|v| v.parse().ok()).unwrap_or(0)).collect())
    }

    /// Clears `who`'s counters over `windows` in the current windows and, for a sender, its
    /// score in today's top senders (`top`), in one transaction; returns each key and the value
    /// it held, and the old score.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn reset(
        &mut self,
        local: NaiveDateTime,
        windows: &[(Window, Unit)],
        who: Who<'_>,
    ) -> Result<(Vec<(String, u64)>, Option<u64>), StoreError> {
        let keys: Vec<String> =
            windows.iter().map(|&(w, u)| self.keys.window(local, w, u, who).to_string()).collect();
        let top = self.keys.top(local.date());
        let mut pipe = redis::pipe();
        pipe.atomic();
        for key in &keys {
            pipe.get(key);
        }
        let member = match who {
            Who::Mailbox(m) => Some(m.as_str()),
            Who::Domain(_) | Who::Server => None,
        };
        if let Some(m) = member {
            pipe.zscore(top, m).zrem(top, m).ignore();
        }
        if !keys.is_empty() {
            pipe.del(&keys).ignore();
        }
        let mut values: Vec<Option<String>> = pipe.query_async(&mut self.conn).await?;
        let score =
            if member.is_some() { values.pop().flatten().and_then(|v| v.parse::<f64>().ok()) } else { None };
        let cleared = keys
            .into_iter()
            .zip(values)
            .map(|(k, v)| (k, v.and_then(|v| v.parse().ok()).unwrap_or(0)))
            .collect();
        Ok((cleared, score.map(self::score)))
    }

    /// Pushes an admin record onto the violations list (newest first), keeping `max`.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn push_violation(&mut self, record: &str, max: u64) -> Result<(), StoreError> {
        let key = self.keys.violations();
        let stop = isize::try_from(max).unwrap_or(isize::MAX).saturating_sub(1);
        let () = redis::pipe()
            .atomic()
            .lpush(key, record)
            .ignore()
            .ltrim(key, 0, stop)
            .ignore()
            .query_async(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Today's biggest senders of one kind (SMTP senders, or local users), biggest first.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn top(
        &mut self,
        day: NaiveDate,
        limit: usize,
        kind: SenderKind,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let local = kind == SenderKind::Local;
        let key = self.keys.top(day).to_string();
        // Read a page at a time until `limit` of the kind asked for are found.
        let page = limit.max(256);
        let mut out = Vec::with_capacity(limit.min(page));
        let mut start = 0isize;
        while out.len() < limit {
            let stop = start.saturating_add(isize::try_from(page).unwrap_or(isize::MAX)) - 1;
            let rows: Vec<(String, f64)> = self.conn.zrevrange_withscores(&key, start, stop).await?;
            let full = rows.len() == page;
            out.extend(
                rows.into_iter()
                    .filter(|(who, _)| who.starts_with(crate::sender::LOCAL_PREFIX) == local)
                    .map(|(who, n)| (who, score(n))),
            );
            if !full {
                break;
            }
            start = stop + 1;
        }
        out.truncate(limit);
        Ok(out)
    }

    /// Today's biggest domains by their own daily counters (what `status @domain` shows: an
    /// exempt sender moves only its own), among the domains of today's senders; biggest first.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn top_domains(
        &mut self,
        day: NaiveDate,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let all: Vec<String> = self.conn.zrange(self.keys.top(day), 0, -1).await?;
        // A local user (`local:web12@mx1`) has no domain: its `@mx1` is the server.
        let mut domains: Vec<String> = all
            .iter()
            .filter(|who| !who.starts_with(crate::sender::LOCAL_PREFIX))
            .filter_map(|who| who.rsplit_once('@').map(|(_, d)| d.to_owned()))
            .collect();
        domains.sort();
        domains.dedup();
        let midnight = day.and_time(chrono::NaiveTime::MIN);
        let mut out = Vec::with_capacity(domains.len());
        for chunk in domains.chunks(1000) {
            let keys: Vec<String> = chunk
                .iter()
                .map(|d| self.keys.window(midnight, Window::Day, Unit::Rcpt, Who::Domain(d)).to_string())
                .collect();
            let values: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut self.conn).await?;
            for (d, v) in chunk.iter().zip(values) {
                out.push((format!("@{d}"), v.and_then(|v| v.parse().ok()).unwrap_or(0)));
            }
        }
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.truncate(limit);
        Ok(out)
    }

    /// The sender's raise and the seconds it has left.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn raise(&mut self, sender: &Mailbox) -> Result<Option<(String, i64)>, StoreError> {
        let key = self.keys.raise(sender);
        let (value, ttl): (Option<String>, i64) =
            redis::pipe().get(key).ttl(key).query_async(&mut self.conn).await?;
        Ok(value.map(|v| (v, ttl)))
    }

    /// Writes a raise (`500/1d 100/1h`) that lasts `secs`.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn set_raise(&mut self, sender: &Mailbox, caps: &[Rate], secs: u64) -> Result<(), StoreError> {
        let () = self.conn.set_ex(self.keys.raise(sender), Rate::list(caps), secs).await?;
        Ok(())
    }

    /// Deletes the sender's raise; returns the caps it stood for, if there was one.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn cancel_raise(&mut self, sender: &Mailbox) -> Result<Option<String>, StoreError> {
        let key = self.keys.raise(sender);
        let (old,): (Option<String>,) =
            redis::pipe().atomic().get(key).del(key).ignore().query_async(&mut self.conn).await?;
        Ok(old)
    }

    /// How many distinct SMTP client addresses the sender used on `day` (0 when unreadable).
    ///
    /// # Errors
    /// Redis faults.
    pub async fn client_ips(&mut self, sender: &Mailbox, day: NaiveDate) -> Result<u64, StoreError> {
        let n: redis::RedisResult<u64> =
            redis::cmd("PFCOUNT").arg(self.keys.ips(day, sender)).query_async(&mut self.conn).await;
        match n {
            Ok(n) => Ok(n),
            // A server's error reply (a key that is not a HyperLogLog): nothing countable.
            Err(e) if e.code().is_some() => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// The sender's lock (`<prefix>:lock:<email>`), if it is locked.
    ///
    /// # Errors
    /// Redis faults.
    /// The lock of a sender or a domain, if any.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn lock_value(&mut self, who: Who<'_>) -> Result<Option<String>, StoreError> {
        let Some((key, _)) = self.lock_target(who) else { return Ok(None) };
        Ok(self.conn.get(key).await?)
    }

    /// The lock key and index member of a sender or a domain (`None` for the server).
    fn lock_target(&self, who: Who<'_>) -> Option<(String, String)> {
        match who {
            Who::Mailbox(m) => Some((self.keys.lock(m).to_string(), m.as_str().to_owned())),
            Who::Domain(d) => Some((self.keys.domain_lock(d).to_string(), format!("@{d}"))),
            Who::Server => None,
        }
    }

    /// Locks a sender or a domain with `value` (the lock's JSON: `ts`, `by`, `reason`), for
    /// `secs` or until unlocked, in the admin locks' index. When it is locked already, the first
    /// lock stays (its `by` and reason, and its index) and gains `note` in its `"history"`; the
    /// longer of the two durations applies. Returns the lock as it was before, if any.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn lock(
        &mut self,
        who: Who<'_>,
        value: &str,
        note: &str,
        secs: Option<u64>,
    ) -> Result<Option<String>, StoreError> {
        let Some((key, member)) = self.lock_target(who) else { return Ok(None) };
        let script = redis::Script::new(
            "local old = redis.call('GET', KEYS[1]) \
             local secs, now = tonumber(ARGV[3]), tonumber(ARGV[4]) \
             local lock, index = ARGV[2], KEYS[2] \
             local ttl = -1 \
             if old then \
               local ok, kept = pcall(cjson.decode, old) \
               if not ok or type(kept) ~= 'table' then kept = {ts = 0, by = 'unknown', reason = old} end \
               if type(kept.history) ~= 'table' then kept.history = {} end \
               table.insert(kept.history, cjson.decode(ARGV[5])) \
               lock = cjson.encode(kept) \
               if kept.by == 'auto' then index = KEYS[3] end \
               ttl = redis.call('TTL', KEYS[1]) \
               if secs > 0 and ttl > secs then secs = ttl end \
               if ttl == -1 then secs = 0 end \
             end \
             if secs > 0 then redis.call('SET', KEYS[1], lock, 'EX', secs) else redis.call('SET', KEYS[1], lock) end \
             redis.call('ZREM', KEYS[2], ARGV[1]) redis.call('ZREM', KEYS[3], ARGV[1]) \
             redis.call('ZADD', index, secs > 0 and (now + secs) or 'inf', ARGV[1]) \
             return old",
        );
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let old: Option<String> = script
            .key(&key)
            .key(self.keys.locks(LockedBy::Admin))
            .key(self.keys.locks(LockedBy::Auto))
            .arg(&member)
            .arg(value)
            .arg(secs.unwrap_or(0))
            .arg(now)
            .arg(note)
            .invoke_async(&mut self.conn)
            .await?;
        Ok(old)
    }

    /// Lifts the lock of a sender (forgetting its client addresses and refusals of `day`, so it
    /// is not locked again before it earns it again) or of a domain, and its index entries;
    /// returns the lock's value. Not locked: `None`, and nothing changed (one script, so a lock
    /// made meanwhile is either lifted whole or left whole).
    ///
    /// # Errors
    /// Redis faults.
    pub async fn unlock(&mut self, who: Who<'_>, day: NaiveDate) -> Result<Option<String>, StoreError> {
        let Some((key, member)) = self.lock_target(who) else { return Ok(None) };
        let script = redis::Script::new(
            "local old = redis.call('GET', KEYS[1]) \
             if not old then return false end \
             redis.call('DEL', unpack(KEYS, 4)) \
             redis.call('ZREM', KEYS[2], ARGV[1]) redis.call('ZREM', KEYS[3], ARGV[1]) \
             return old",
        );
        let mut call = script.key(&key);
        call.key(self.keys.locks(LockedBy::Auto)).key(self.keys.locks(LockedBy::Admin)).key(&key);
        if let Who::Mailbox(sender) = who {
            call.key(self.keys.ips(day, sender)).key(self.keys.refusals(day, sender));
        }
        let old: Option<String> = call.arg(&member).invoke_async(&mut self.conn).await?;
        Ok(old)
    }

    /// Every locked sender: its address, the lock's value and the seconds it has left (-1:
    /// until unlocked), sorted by address. Walks the lock keys (a lock written from outside
    /// counts too) and repairs the two indexes on the way ([`Self::repair_lock_index`]).
    ///
    /// # Errors
    /// Redis faults.
    pub async fn locks(&mut self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut out = self.scan_locks().await?;
        self.index_locks(&out).await?;
        out.sort();
        Ok(out)
    }

    /// Makes `<prefix>:locks:auto` and `<prefix>:locks:admin` hold exactly the locked senders
    /// (by the lock's `by`; scored by expiry): locks written from outside or before the indexes
    /// existed are added, members whose lock is gone are removed. Returns how many are locked.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn repair_lock_index(&mut self) -> Result<usize, StoreError> {
        let found = self.scan_locks().await?;
        self.index_locks(&found).await?;
        Ok(found.len())
    }

    /// How many senders each index holds (`auto`, `admin`), after removing expired members: a
    /// few commands whatever the size of the keyspace.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn locked_counts(&mut self) -> Result<(u64, u64), StoreError> {
        let now = expiry(Some(0));
        let (auto, admin) = (self.keys.locks(LockedBy::Auto), self.keys.locks(LockedBy::Admin));
        let (a, b): (u64, u64) = redis::pipe()
            .zrembyscore(auto, "-inf", &now)
            .ignore()
            .zrembyscore(admin, "-inf", &now)
            .ignore()
            .zcard(auto)
            .zcard(admin)
            .query_async(&mut self.conn)
            .await?;
        Ok((a, b))
    }

    async fn scan_locks(&mut self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut keys: Vec<String> = Vec::new();
        {
            let mut iter: redis::AsyncIter<'_, String> = self
                .conn
                .scan_options(
                    redis::ScanOptions::default().with_pattern(self.keys.lock_pattern()).with_count(1000),
                )
                .await?;
            while let Some(key) = futures_util::StreamExt::next(&mut iter).await {
                keys.push(key?);
            }
        }
        keys.sort();
        keys.dedup();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let (value, ttl): (Option<String>, i64) =
                redis::pipe().get(&key).ttl(&key).query_async(&mut self.conn).await?;
            if let (Some(value), Some(sender)) = (value, self.keys.locked_sender(&key)) {
                out.push((sender.to_owned(), value, ttl));
            }
        }
        Ok(out)
    }

    /// Puts every lock of `found` (sender, lock value, TTL) in its index, then drops the
    /// members whose lock is gone. A member is dropped only when its lock key is missing at that
    /// moment (checked in one script), so a lock made meanwhile keeps its entry.
    async fn index_locks(&mut self, found: &[(String, String, i64)]) -> Result<(), StoreError> {
        let (auto, admin) = (self.keys.locks(LockedBy::Auto), self.keys.locks(LockedBy::Admin));
        let mut pipe = redis::pipe();
        for (sender, value, ttl) in found {
            let (index, other) = if Lock::parse(value).by == "auto" { (auto, admin) } else { (admin, auto) };
            pipe.zadd(index, sender, expiry(u64::try_from(*ttl).ok())).ignore().zrem(other, sender).ignore();
        }
        let (listed_auto, listed_admin): (Vec<String>, Vec<String>) =
            pipe.zrange(auto, 0, -1).zrange(admin, 0, -1).query_async(&mut self.conn).await?;
        let locked: std::collections::HashSet<&str> = found.iter().map(|(s, _, _)| s.as_str()).collect();
        let mut stale: Vec<String> =
            listed_auto.into_iter().chain(listed_admin).filter(|m| !locked.contains(m.as_str())).collect();
        stale.sort();
        stale.dedup();
        let script = redis::Script::new(
            "for i = 3, #KEYS do if redis.call('EXISTS', KEYS[i]) == 0 then \
             redis.call('ZREM', KEYS[1], ARGV[i - 2]); redis.call('ZREM', KEYS[2], ARGV[i - 2]) end end",
        );
        for chunk in stale.chunks(500) {
            let mut call = script.key(auto.to_string());
            call.key(admin.to_string());
            for member in chunk {
                call.key(self.keys.lock_of(member)).arg(member);
            }
            let () = call.invoke_async(&mut self.conn).await?;
        }
        Ok(())
    }

    /// The most recent violation records (raw JSON), newest first.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn violations(&mut self, limit: usize) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let stop = isize::try_from(limit).unwrap_or(isize::MAX).saturating_sub(1);
        Ok(self.conn.lrange(self.keys.violations(), 0, stop).await?)
    }
}

/// A lock index's score: the unix time a lock of `secs` seconds from now expires, or `+inf`.
fn expiry(secs: Option<u64>) -> String {
    match secs {
        Some(s) => {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            now.saturating_add(s).to_string()
        }
        None => "+inf".into(),
    }
}

/// A sorted-set score as a count.
fn score(n: f64) -> u64 {
    if n.is_finite() && n > 0.0 {
        // Scores are whole recipient counts, far below 2^53.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let v = n.round() as u64;
        v
    } else {
        0
    }
}
