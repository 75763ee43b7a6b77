//! Delivery: a mail through the configured sendmail command, an event POSTed to the webhook.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// How long one sendmail run may take.
const SENDMAIL_TIMEOUT: Duration = Duration::from_secs(30);
/// The webhook: each try's timeout, and the pause before the 2nd and 3rd tries.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
const WEBHOOK_BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];

/// Runs `argv -i -f <from> -- <to>...` with the message on its stdin: the recipients are
/// arguments, never read from the headers. An exit status other than 0 is a failure.
///
/// # Errors
/// A description of the failure (start, write, timeout, exit status with stderr's first line).
pub async fn sendmail(argv: &[String], from: &str, to: &[String], message: &str) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("no sendmail command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .args(["-i", "-f", from, "--"])
        .args(to)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let run = async {
        // A program that exits without reading all of it is judged by its exit status.
        let _ = stdin.write_all(message.as_bytes()).await;
        drop(stdin);
        child.wait_with_output().await
    };
    let out = tokio::time::timeout(SENDMAIL_TIMEOUT, run)
        .await
        .map_err(|_| format!("{program}: no exit after {} s", SENDMAIL_TIMEOUT.as_secs()))?
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(format!("{program}: {} ({})", out.status, stderr.lines().next().unwrap_or("no message").trim()))
}

/// The webhook's HTTP client (rustls; `None` when it cannot be built).
#[must_use]
pub fn client() -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        .connect_timeout(WEBHOOK_TIMEOUT)
        .user_agent(concat!("email-ratelimit/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| tracing::warn!("notify: no webhook client: {e}"))
        .ok()
}

/// POSTs `body` (JSON) to `url`: 3 tries of at most 5 s each, 1 s then 2 s apart; success is a
/// 2xx status. The body (and so the event's `id`) is the same on every try.
///
/// # Errors
/// The last try's failure.
pub async fn webhook(client: &reqwest::Client, url: &str, body: String) -> Result<(), String> {
    let mut last = String::new();
    for pause in std::iter::once(None).chain(WEBHOOK_BACKOFF.into_iter().map(Some)) {
        if let Some(p) = pause {
            tokio::time::sleep(p).await;
        }
        // The whole attempt (name lookup, connect, TLS, request, answer) in 5 s.
        let sent = tokio::time::timeout(
            WEBHOOK_TIMEOUT,
            client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send(),
        )
        .await;
        match sent {
            Ok(Ok(r)) if r.status().is_success() => return Ok(()),
            Ok(Ok(r)) => last = format!("HTTP {}", r.status()),
            Ok(Err(e)) => last = chain(&e.without_url()),
            Err(_) => last = format!("no answer within {} s", WEBHOOK_TIMEOUT.as_secs()),
        }
    }
    Err(format!("{} after 3 tries: {last}", crate::config::redact(url)))
}

/// An error with its causes: `error sending request: operation timed out`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}
