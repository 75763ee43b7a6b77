//! The end-to-end load client: drives a real Postfix over N persistent SMTP sessions, each
//! message authenticated as one of `--users` SASL users through `XCLIENT LOGIN=` (so one session
//! can send for many users, as webmail does), with 1 to `--max-rcpt` recipients, and measures
//! what a sender sees: messages per second and the time from the end of DATA (the final
//! `<CRLF>.<CRLF>` written) to the server's reply, where Postfix asks the policy hook.
//!
//!     cargo run --release --bin erl-smtp-load -- --server 127.0.0.1:2525 --sessions 8 --duration 10
//!
//! Per message, on one session: `XCLIENT LOGIN=<user> ADDR=<the user's address>
//! NAME=[UNAVAILABLE]` (220), `EHLO` (250), then `MAIL`, the `RCPT`s and `DATA` pipelined (250s and
//! 354), then the message and the dot (250). The server must list the client and every `ADDR`
//! (10.0.0.0/8 here) in `smtpd_authorized_xclient_hosts`: after one XCLIENT the session's client
//! address is the `ADDR` given, and the next XCLIENT is authorized against it.
//!
//! `--rate R` runs open-loop: messages start on a fixed schedule (R per second in all, spread
//! evenly over the sessions); a message that starts more than 1 ms after its due time is
//! counted as `late` (the schedule was not kept: the rate is past what the server sustains).
//! Any reply but the expected one is an error (a deferral at the end of DATA is counted apart,
//! as `deferred`); the session is replaced by a new one and goes on. The last line is
//! machine-readable: `RESULT msgs_s=... p50_us=... p99_us=... ...`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

#[derive(Debug, Parser)]
#[command(about = "SMTP load generator for a Postfix with (or without) the email-ratelimit hook")]
struct Args {
    /// The smtpd to drive, host:port.
    #[arg(long)]
    server: String,
    /// Persistent SMTP sessions, each one message at a time.
    #[arg(long, default_value_t = 8)]
    sessions: usize,
    /// Seconds to measure.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Distinct SASL users (`user<N>@<domain>`), chosen at random per message.
    #[arg(long, default_value_t = 10_000)]
    users: u32,
    #[arg(long, default_value = "example.com")]
    domain: String,
    /// Recipients' domain (the server discards mail to it).
    #[arg(long, default_value = "remote.test")]
    rcpt_domain: String,
    /// Recipients' local parts, comma-separated: each message takes the first ones (default:
    /// `r<user>.<i>`, a new address per user and position).
    #[arg(long, value_delimiter = ',')]
    rcpt_names: Vec<String>,
    /// Recipients per message: uniform from 1 to this.
    #[arg(long, default_value_t = 5)]
    max_rcpt: u32,
    /// Approximate message size in bytes (headers and body).
    #[arg(long, default_value_t = 3000)]
    size: usize,
    /// Open loop: messages per second in all, on a fixed schedule.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runtime worker threads for the client.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// What went wrong on a session: the server's unexpected reply, or the connection.
#[derive(Debug)]
enum Failure {
    Reply(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

struct Session {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: String,
}

impl Session {
    async fn open(server: &str) -> Result<Self, Failure> {
        let stream = TcpStream::connect(server).await?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        let mut s = Self { reader: BufReader::new(read), writer, line: String::new() };
        s.expect("220").await?;
        s.command("EHLO bench.test\r\n", "250").await?;
        Ok(s)
    }

    /// Reads one (possibly multi-line) reply; returns its last line.
    async fn reply(&mut self) -> Result<&str, Failure> {
        loop {
            self.line.clear();
            if self.reader.read_line(&mut self.line).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            if self.line.as_bytes().get(3) != Some(&b'-') {
                return Ok(self.line.trim_end());
            }
        }
    }

    async fn expect(&mut self, code: &str) -> Result<(), Failure> {
        let line = self.reply().await?;
        if line.starts_with(code) { Ok(()) } else { Err(Failure::Reply(line.to_owned())) }
    }

    async fn command(&mut self, text: &str, code: &str) -> Result<(), Failure> {
        self.writer.write_all(text.as_bytes()).await?;
        self.expect(code).await
    }
}

/// One message to send: its user, its recipients.
struct Message {
    user: u32,
    rcpts: u32,
}

impl Message {
    fn envelope(&self, args: &Args) -> String {
        let mut s = format!("MAIL FROM:<user{}@{}>\r\n", self.user, args.domain);
        for r in 0..self.rcpts {
            match args.rcpt_names.get(r as usize) {
                Some(name) => s.push_str(&format!("RCPT TO:<{name}@{}>\r\n", args.rcpt_domain)),
                None => s.push_str(&format!("RCPT TO:<r{}.{r}@{}>\r\n", self.user, args.rcpt_domain)),
            }
        }
        s.push_str("DATA\r\n");
        s
    }

    /// The user's fixed client address, in 10.0.0.0/8.
    fn addr(&self) -> String {
        let k = self.user;
        format!("10.{}.{}.{}", k >> 16 & 0xff, k >> 8 & 0xff, k & 0xff)
    }
}

/// Headers and a body of about `size` bytes, dot-terminated.
fn message_text(size: usize) -> Vec<u8> {
    let mut s = String::from(
        "From: <sender@example.com>\r\nTo: <recipient@remote.test>\r\nSubject: benchmark\r\n\
         Date: Thu, 03 Dec 2026 08:00:00 +0000\r\nMessage-ID: <bench@example.com>\r\n\r\n",
    );
    let filler = "The quick brown fox jumps over the lazy dog, and the policy hook counts it.\r\n";
    while s.len() + filler.len() < size {
        s.push_str(filler);
    }
    s.push_str(".\r\n");
    s.into_bytes()
}

#[derive(Default)]
struct Tally {
    /// End of DATA to the reply, microseconds.
    eod: Option<Histogram<u64>>,
    /// XCLIENT to the reply after DATA: the whole transaction.
    txn: Option<Histogram<u64>>,
    messages: u64,
    /// Messages sent, the warm-up's too (for CPU per message over the whole run).
    sent: u64,
    recipients: u64,
    deferred: u64,
    errors: u64,
    late: u64,
    first_error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

/// Sends one message; returns the microseconds from the end of DATA and from XCLIENT to the
/// final reply.
async fn send(s: &mut Session, m: &Message, args: &Args, text: &[u8]) -> Result<(u64, u64), Failure> {
    let started = Instant::now();
    let xclient =
        format!("XCLIENT LOGIN=user{}@{} ADDR={} NAME=[UNAVAILABLE]\r\n", m.user, args.domain, m.addr());
    s.command(&xclient, "220").await?;
    s.command("EHLO bench.test\r\n", "250").await?;
    s.writer.write_all(m.envelope(args).as_bytes()).await?;
    for _ in 0..=m.rcpts {
        s.expect("250").await?;
    }
    s.expect("354").await?;
    s.writer.write_all(text).await?;
    let end_of_data = Instant::now();
    s.expect("250").await?;
    let micros = |t: Instant| u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
    Ok((micros(end_of_data), micros(started)))
}

async fn session(
    args: Arc<Args>,
    id: usize,
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
    schedule: Option<(tokio::time::Instant, Duration)>,
) -> Tally {
    let mut t = Tally { eod: Some(histogram()), txn: Some(histogram()), ..Tally::default() };
    let mut rng = fastrand::Rng::with_seed(args.seed.wrapping_mul(1_000_003).wrapping_add(id as u64));
    let text = message_text(args.size);
    let mut conn: Option<Session> = None;
    let mut k: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Some((first, every)) = schedule {
            let due = first + every * k;
            k += 1;
            let now = tokio::time::Instant::now();
            if now < due {
                tokio::time::sleep_until(due).await;
            } else if now > due + Duration::from_millis(1) && measuring.load(Ordering::Relaxed) {
                t.late += 1;
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let m = Message { user: rng.u32(0..args.users.max(1)), rcpts: rng.u32(1..=args.max_rcpt.max(1)) };
        let s = match conn.as_mut() {
            Some(s) => s,
            None => match Session::open(&args.server).await {
                Ok(s) => conn.insert(s),
                Err(e) => {
                    t.errors += 1;
                    t.first_error.get_or_insert_with(|| format!("connect: {e:?}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let result = send(s, &m, &args, &text).await;
        let counting = measuring.load(Ordering::Relaxed);
        if result.is_ok() {
            t.sent += 1;
        }
        match result {
            Ok((eod, txn)) if counting => {
                let _ = t.eod.as_mut().map(|h| h.record(eod));
                let _ = t.txn.as_mut().map(|h| h.record(txn));
                t.messages += 1;
                t.recipients += u64::from(m.rcpts);
            }
            Ok(_) => {}
            Err(Failure::Reply(line)) => {
                if line.starts_with('4') && line.contains("END-OF-MESSAGE") {
                    t.deferred += 1;
                } else {
                    t.errors += 1;
                }
                t.first_error.get_or_insert(line);
                // Pipelined replies may still be on their way: a new session, in step again.
                conn = None;
            }
            Err(Failure::Io(e)) => {
                t.errors += 1;
                t.first_error.get_or_insert_with(|| format!("connection: {e}"));
                conn = None;
            }
        }
    }
    if let Some(s) = conn.as_mut() {
        let _ = s.command("QUIT\r\n", "221").await;
    }
    t
}

fn main() -> std::io::Result<()> {
    let args = Arc::new(Args::parse());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let sessions = args.sessions.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(args.warmup <= 0.0));
    let (tallies, elapsed) = runtime.block_on(async {
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        let schedule = |c: usize| {
            args.rate.filter(|r| *r > 0.0).map(|rate| {
                let every = Duration::from_secs_f64(sessions as f64 / rate);
                (start + every.mul_f64(c as f64 / sessions as f64), every)
            })
        };
        let tasks: Vec<_> = (0..sessions)
            .map(|c| tokio::spawn(session(args.clone(), c, stop.clone(), measuring.clone(), schedule(c))))
            .collect();
        if args.warmup > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
            measuring.store(true, Ordering::Relaxed);
        }
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
        stop.store(true, Ordering::Relaxed);
        let elapsed = started.elapsed();
        let mut tallies = Vec::new();
        for task in tasks {
            if let Ok(t) = task.await {
                tallies.push(t);
            }
        }
        (tallies, elapsed)
    });

    let (mut eod, mut txn) = (histogram(), histogram());
    let mut all = Tally::default();
    for t in tallies {
        t.eod.iter().for_each(|h| eod.add(h).expect("same bounds"));
        t.txn.iter().for_each(|h| txn.add(h).expect("same bounds"));
        all.messages += t.messages;
        all.sent += t.sent;
        all.recipients += t.recipients;
        all.deferred += t.deferred;
        all.errors += t.errors;
        all.late += t.late;
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
    }
    let secs = elapsed.as_secs_f64();
    let rate = all.messages as f64 / secs;
    println!(
        "sessions={sessions} messages={} recipients={} seconds={secs:.2} throughput={rate:.1} msg/s{}",
        all.messages,
        all.recipients,
        args.rate.map_or_else(String::new, |r| format!(" (open loop at {r:.0} msg/s, late={})", all.late))
    );
    let [p50, p90, p99, p999] = [0.5, 0.9, 0.99, 0.999].map(|p| eod.value_at_quantile(p));
    let (max, txn50, txn99) = (eod.max(), txn.value_at_quantile(0.5), txn.value_at_quantile(0.99));
    println!("end of DATA to reply, us: p50={p50} p90={p90} p99={p99} p99.9={p999} max={max}");
    println!("whole transaction, us: p50={txn50} p99={txn99}");
    if let Some(e) = &all.first_error {
        println!("deferred={} errors={} first: {e}", all.deferred, all.errors);
    }
    let Tally { messages, sent, recipients, deferred, errors, late, .. } = all;
    println!(
        "RESULT msgs_s={rate:.1} p50_us={p50} p90_us={p90} p99_us={p99} p999_us={p999} max_us={max} \
         txn_p50_us={txn50} txn_p99_us={txn99} messages={messages} sent={sent} recipients={recipients} \
         deferred={deferred} errors={errors} late={late}"
    );
    Ok(())
}
