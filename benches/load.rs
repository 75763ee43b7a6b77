//! The load tool: N persistent connections speaking the Postfix policy protocol the way smtpd
//! processes do (one request at a time per connection, realistic END-OF-MESSAGE requests with
//! every attribute Postfix 3.7 sends), from a pool of senders or one hot sender, for a duration
//! or a count. Prints throughput, latency percentiles (HDR histogram) and the count of each
//! action.
//!
//!     cargo run --release --bin erl-load -- --socket /run/erl.sock --connections 64 --duration 10
//!     cargo run --release --bin erl-load -- --serve-dunno /tmp/dunno.sock   # a DUNNO-only server
//!     cargo run --release --bin erl-load -- --serve-dunno /tmp/ping.sock --ping-redis redis://127.0.0.1/
//!
//! `--rate R` runs open-loop: requests start on a fixed schedule (R per second in all, spread
//! evenly over the connections), and latency counts from the scheduled start when the previous
//! reply was late (a stall is not hidden), from the actual send when the connection was idle
//! (timer wake-up slack is not charged to the server).
//!
//! Like smtpd, a connection the daemon closes is reopened and the unanswered request sent again
//! (counted as `reconnects`); only a daemon that cannot be reached for 5 s is an error. The
//! last line is machine-readable: `RESULT rps=... p50_us=... p99_us=... max_us=... ...`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

#[derive(Debug, Parser)]
#[command(about = "Policy-protocol load generator for email-ratelimit")]
struct Args {
    /// The daemon's Unix socket.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Instead of generating load: serve DUNNO to everyone on this socket (a baseline server).
    #[arg(long)]
    serve_dunno: Option<PathBuf>,
    /// With --serve-dunno: send one Redis `PING` per request over one multiplexed connection
    /// before answering (the floor of any answer that needs a Redis round trip).
    #[arg(long, requires = "serve_dunno")]
    ping_redis: Option<String>,
    /// With --ping-redis: instead of `PING`, run the daemon's own `consume.lua` per request, with
    /// the keys and arguments of benches/lib.sh's v2 cap model (six counters, six caps far above
    /// the load; senders rotating over 10,000): the floor of any server that makes this call.
    #[arg(long, requires = "ping_redis")]
    eval_consume: bool,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds to run (ignored when --requests is set).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Total requests to send instead of a duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Distinct senders, chosen round-robin per connection.
    #[arg(long, default_value_t = 10_000)]
    senders: usize,
    /// Every request from this one sender.
    #[arg(long)]
    hot_sender: Option<String>,
    /// recipient_count of each message.
    #[arg(long, default_value_t = 1)]
    recipients: u32,
    /// Runtime worker threads for the generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seconds of warm-up before measuring (duration mode).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Open loop: requests per second in all, on a fixed schedule.
    #[arg(long)]
    rate: Option<f64>,
}

/// One connection's schedule in open-loop mode.
#[derive(Clone, Copy)]
struct Schedule {
    first: tokio::time::Instant,
    every: Duration,
}

fn request(sender: &str, rcpt: u32, n: u64) -> Vec<u8> {
    format!(
        "request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nprotocol_name=ESMTP\n\
         client_address=203.0.113.{}\nclient_name=client{n}.example.net\nclient_port=5{:04}\n\
         reverse_client_name=client{n}.example.net\nserver_address=192.0.2.25\nserver_port=587\n\
         helo_name=client{n}.example.net\nsender={sender}\nrecipient=\nrecipient_count={rcpt}\n\
         queue_id=4X{n:08X}\ninstance=1a2b.{n:x}.3c4d.0\nsize=18245\netrn_domain=\nstress=\n\
         sasl_method=PLAIN\nsasl_username={sender}\nsasl_sender=\nccert_subject=\nccert_issuer=\n\
         ccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=TLSv1.3\n\
         encryption_cipher=TLS_AES_256_GCM_SHA384\nencryption_keysize=256\n\
         policy_context=submission\ncompatibility_level=3.6\nmail_version=3.7.11\n\n",
        n % 250 + 1,
        n % 10_000
    )
    .into_bytes()
}

/// Reads one reply (ending in an empty line); returns its action word.
async fn reply(stream: &mut UnixStream, buf: &mut Vec<u8>) -> std::io::Result<Action> {
    buf.clear();
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.ends_with(b"\n\n") {
            return Ok(if buf.starts_with(b"action=DUNNO") {
                Action::Dunno
            } else if buf.starts_with(b"action=DEFER_IF_PERMIT") {
                Action::Defer
            } else {
                Action::Other
            });
        }
    }
}

#[derive(Clone, Copy)]
enum Action {
    Dunno,
    Defer,
    Other,
}

struct Tally {
    histogram: Histogram<u64>,
    dunno: u64,
    defer: u64,
    other: u64,
    errors: u64,
    reconnects: u64,
}

/// Connects, retrying for up to 5 s (a daemon restarting behind its socket).
async fn connect(socket: &PathBuf) -> Option<UnixStream> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match UnixStream::connect(socket).await {
            Ok(s) => return Some(s),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(_) => return None,
        }
    }
}

async fn connection(
    socket: PathBuf,
    requests: Arc<Vec<Vec<u8>>>,
    offset: usize,
    budget: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
    schedule: Option<Schedule>,
) -> Tally {
    let mut tally = Tally {
        histogram: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        dunno: 0,
        defer: 0,
        other: 0,
        errors: 0,
        reconnects: 0,
    };
    let Some(mut stream) = connect(&socket).await else {
        tally.errors += 1;
        return tally;
    };
    let mut buf = Vec::with_capacity(256);
    let mut i = offset;
    let mut k: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        if budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1)).is_err() {
            break;
        }
        let req = &requests[i % requests.len()];
        i += 1;
        let started = match schedule {
            None => Instant::now(),
            Some(s) => {
                let due = s.first + s.every * k;
                k += 1;
                if tokio::time::Instant::now() < due {
                    tokio::time::sleep_until(due).await;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    Instant::now()
                } else {
                    // Late: the previous reply held this connection past the due time.
                    due.into_std()
                }
            }
        };
        let action = loop {
            let result = async {
                stream.write_all(req).await?;
                reply(&mut stream, &mut buf).await
            }
            .await;
            match result {
                Ok(action) => break Some(action),
                Err(_) => {
                    tally.reconnects += 1;
                    match connect(&socket).await {
                        Some(s) => stream = s,
                        None => break None,
                    }
                }
            }
        };
        let Some(action) = action else {
            tally.errors += 1;
            break;
        };
        if measuring.load(Ordering::Relaxed) {
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
            let _ = tally.histogram.record(micros);
            match action {
                Action::Dunno => tally.dunno += 1,
                Action::Defer => tally.defer += 1,
                Action::Other => tally.other += 1,
            }
        }
    }
    tally
}

/// `consume.lua` as the daemon calls it for sender `n` of 10,000 under the v2 cap model.
fn consume_call(sha: &str, n: u64) -> redis::Cmd {
    let user = format!("user{}@example.com", n % 10_000);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (day, hour) = (now / 86_400, now % 86_400 / 3600);
    let (d, h) = (format!("erl:d{day}:"), format!("erl:d{day}T{hour:02}00/1h:"));
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha).arg(16);
    for prefix in [&d, &d, &d, &h, &h, &h].iter().zip(0..) {
        let who = match prefix.1 % 3 {
            0 => user.clone(),
            1 => "@example.com".to_owned(),
            _ => "global".to_owned(),
        };
        cmd.arg(format!("{}{who}", prefix.0));
    }
    cmd.arg("erl:violations").arg(format!("erl:top:{day}")).arg(format!("erl:raise:{user}"));
    cmd.arg(format!("erl:lock:{user}"))
        .arg(format!("erl:ips:{day}:{user}"))
        .arg(format!("erl:refusals:{day}:{user}"))
        .arg(format!("erl:fp:{day}:{user}"))
        .arg("erl:locks:auto")
        .arg("erl:lock:@example.com")
        .arg(format!("erl:hist:{user}"));
    cmd.arg(1).arg("count").arg(1).arg(1000).arg(now).arg(&user).arg("203.0.113.7").arg("");
    cmd.arg(93_600).arg(30).arg(0).arg(0).arg("mx1");
    // The message: its transaction, fingerprint, the fingerprint set's TTL, no oversize cap; the
    // top senders' TTL; not over max_rcpt_per_message.
    cmd.arg("").arg("0123456789abcdef").arg(50_000).arg(0).arg(691_200).arg(0);
    // Learning off: no history mark, no TTL, no network.
    cmd.arg("").arg(0).arg("");
    // Each counter's TTL and what the message (1 recipient) adds to it.
    for ttl in [93_600, 93_600, 93_600, 7200, 7200, 7200] {
        cmd.arg(ttl).arg(1);
    }
    for (i, (scope, window)) in [
        ("user", "1d"),
        ("user", "1h"),
        ("domain", "1d"),
        ("domain", "1h"),
        ("global", "1d"),
        ("global", "1h"),
    ]
    .iter()
    .enumerate()
    {
        let counter = [1, 4, 2, 5, 3, 6][i];
        cmd.arg(counter).arg(1_000_000_000).arg(*scope).arg(*window).arg("rcpt");
    }
    cmd
}

async fn serve_dunno(path: PathBuf, ping_redis: Option<String>, eval_consume: bool) -> std::io::Result<()> {
    let redis = match ping_redis {
        Some(url) => {
            let client = redis::Client::open(url).map_err(std::io::Error::other)?;
            Some(client.get_multiplexed_async_connection().await.map_err(std::io::Error::other)?)
        }
        None => None,
    };
    let sha = match (&redis, eval_consume) {
        (Some(conn), true) => {
            let mut conn = conn.clone();
            let sha: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(include_str!("../src/store/consume.lua"))
                .query_async(&mut conn)
                .await
                .map_err(std::io::Error::other)?;
            Some(Arc::new(sha))
        }
        _ => None,
    };
    let calls = Arc::new(AtomicU64::new(0));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    eprintln!("serving DUNNO on {}", path.display());
    loop {
        let (mut stream, _) = listener.accept().await?;
        let mut redis = redis.clone();
        let (sha, calls) = (sha.clone(), calls.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut out = Vec::with_capacity(1024);
            // Whether the previous read ended in a newline (a request end may straddle reads).
            let mut newline = false;
            loop {
                let n = match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let data = &buf[..n];
                let mut ends = 0usize;
                if newline && data[0] == b'\n' {
                    ends += 1;
                }
                ends += memchr::memmem::find_iter(data, b"\n\n").count();
                newline = data[n - 1] == b'\n' && !(n >= 2 && data[n - 2] == b'\n');
                out.clear();
                for _ in 0..ends {
                    if let Some(conn) = redis.as_mut() {
                        let reply: redis::RedisResult<redis::Value> = match &sha {
                            Some(sha) => {
                                consume_call(sha, calls.fetch_add(1, Ordering::Relaxed))
                                    .query_async(conn)
                                    .await
                            }
                            None => redis::cmd("PING").query_async(conn).await,
                        };
                        if reply.is_err() {
                            return;
                        }
                    }
                    out.extend_from_slice(b"action=DUNNO\n\n");
                }
                if !out.is_empty() && stream.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    if let Some(path) = args.serve_dunno.clone() {
        return runtime.block_on(serve_dunno(path, args.ping_redis.clone(), args.eval_consume));
    }
    let socket =
        args.socket.clone().ok_or_else(|| std::io::Error::other("--socket or --serve-dunno is required"))?;
    let requests: Vec<Vec<u8>> = match &args.hot_sender {
        Some(s) => (0..64).map(|n| request(s, args.recipients, n)).collect(),
        None => (0..args.senders.max(1))
            .map(|i| request(&format!("user{i}@example.com"), args.recipients, i as u64))
            .collect(),
    };
    let requests = Arc::new(requests);
    let stop = Arc::new(AtomicBool::new(false));
    let counted = args.requests.is_some();
    let measuring = Arc::new(AtomicBool::new(counted || args.warmup <= 0.0));
    let budget = Arc::new(AtomicU64::new(args.requests.unwrap_or(u64::MAX)));
    let connections = args.connections.max(1);
    let (tallies, elapsed) = runtime.block_on(async {
        // Open loop: each connection sends every connections/rate seconds, the connections
        // staggered evenly across that interval.
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        let schedule = |c: usize| {
            args.rate.filter(|r| *r > 0.0).map(|rate| {
                let every = Duration::from_secs_f64(connections as f64 / rate);
                Schedule { first: start + every.mul_f64(c as f64 / connections as f64), every }
            })
        };
        let tasks: Vec<_> = (0..connections)
            .map(|c| {
                tokio::spawn(connection(
                    socket.clone(),
                    requests.clone(),
                    c * 7919,
                    budget.clone(),
                    stop.clone(),
                    measuring.clone(),
                    schedule(c),
                ))
            })
            .collect();
        if !counted && args.warmup > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
            measuring.store(true, Ordering::Relaxed);
        }
        let started = Instant::now();
        if !counted {
            tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
            stop.store(true, Ordering::Relaxed);
        }
        let mut tallies = Vec::new();
        for t in tasks {
            if let Ok(tally) = t.await {
                tallies.push(tally);
            }
        }
        (tallies, started.elapsed())
    });

    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let (mut dunno, mut defer, mut other, mut errors, mut reconnects) = (0, 0, 0, 0, 0);
    for t in &tallies {
        histogram.add(&t.histogram).expect("same bounds");
        dunno += t.dunno;
        defer += t.defer;
        other += t.other;
        errors += t.errors;
        reconnects += t.reconnects;
    }
    let total = histogram.len();
    let secs = elapsed.as_secs_f64();
    let rps = total as f64 / secs;
    let q = |p: f64| histogram.value_at_quantile(p);
    println!(
        "connections={} requests={total} seconds={secs:.2} throughput={rps:.0} req/s{}",
        args.connections,
        args.rate.map_or_else(String::new, |r| format!(" (open loop at {r:.0} req/s)"))
    );
    println!(
        "latency_us p50={} p90={} p99={} p99.9={} max={}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        histogram.max()
    );
    println!(
        "actions DUNNO={dunno} DEFER_IF_PERMIT={defer} other={other} errors={errors} reconnects={reconnects}"
    );
    println!(
        "RESULT rps={rps:.0} p50_us={} p90_us={} p99_us={} p999_us={} max_us={} dunno={dunno} defer={defer} other={other} errors={errors} reconnects={reconnects}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        histogram.max()
    );
    Ok(())
}
