//! The violation record pushed onto `<prefix>:violations` (the admin panel reads it).

use serde::{Deserialize, Serialize};

/// One refusal, or one would-be refusal in log-only mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Unix seconds.
    pub ts: i64,
    /// `"user"` (mailbox cap), `"domain"`, `"global"`, `"local"` (website mail), `"suspect"` or `"locked"`.
    #[serde(rename = "type")]
    pub kind: String,
    pub user: String,
    pub limit: u64,
    /// The count before this message.
    pub count: u64,
    pub rcpt: u64,
    pub ip: String,
    pub enforced: bool,
    /// The cap's window (`1d`, `1h`, `15m`...); v1 records have none and mean `1d`.
    #[serde(default = "one_day")]
    pub window: String,
    /// The server that refused (v2; empty in v1 records).
    #[serde(default)]
    pub server: String,
    /// v3: the message had more recipients than the cap allows at all (it was rejected).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oversize: bool,
    /// v3: `"msg"` for a message cap; absent for a recipient cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// v3: the message had more recipients than `max_rcpt_per_message` (it was rejected;
    /// `limit` is that setting, `count` the message's recipients, `window` is `message`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_message: bool,
}

fn one_day() -> String {
    "1d".into()
}
