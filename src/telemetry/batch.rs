//! The log writer: lines are appended to a shared buffer, and one writer thread writes what has
//! gathered in one `write` some milliseconds after the first line of a batch arrived. The
//! request path pays a short lock and a copy; a thread wake-up happens once per batch, not once
//! per line (a channel hand-off per line cost about as much CPU as the rest of a decision), and
//! an idle daemon does not wake at all.
//!
//! Bounded: lines that find the buffer full (the output is stuck) are dropped and counted, and
//! the count is written when the output moves again. Dropping the [`Flush`] writes what is left.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a batch gathers after its first line before it is written.
pub const GATHER: Duration = Duration::from_millis(20);
/// Most bytes waiting to be written; lines beyond are dropped.
pub const MAX_PENDING: usize = 8 * 1024 * 1024;

struct Shared {
    pending: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while appending leaves at worst a partial line; the buffer is still usable.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hands lines to the writer thread (the `MakeWriter` of the fmt layer).
#[derive(Clone)]
pub struct Lines {
    shared: Arc<Shared>,
    writer: Thread,
    max: usize,
}

/// Stops the writer thread when dropped, after it has written every queued line.
pub struct Flush {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread on `out`; `max`: the most bytes queued ([`MAX_PENDING`]).
///
/// # Errors
/// When the thread cannot be started.
pub fn start<W: Write + Send + 'static>(out: W, gather: Duration, max: usize) -> io::Result<(Lines, Flush)> {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Vec::with_capacity(64 * 1024)),
        dropped: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let worker = shared.clone();
    let thread = thread::Builder::new().name("erl-log".into()).spawn(move || run(&worker, out, gather))?;
    let lines = Lines { shared: shared.clone(), writer: thread.thread().clone(), max };
    Ok((lines, Flush { shared, thread: Some(thread) }))
}

fn run<W: Write>(shared: &Shared, mut out: W, gather: Duration) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        let stopping = shared.stop.load(Ordering::Acquire);
        if !stopping {
            if shared.pending().is_empty() {
                // Woken by the first line of the next batch (or by Flush).
                thread::park();
                continue;
            }
            thread::sleep(gather);
        }
        std::mem::swap(&mut *shared.pending(), &mut batch);
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                batch,
                "email-ratelimit: {dropped} log lines dropped (the log output was not keeping up)"
            );
        }
        // Nowhere to report a failed log write: the lines are lost, mail is not.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if batch.capacity() > 1024 * 1024 {
            batch.shrink_to(64 * 1024);
        }
        if stopping {
            return;
        }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// One line being written (the fmt layer writes a whole formatted event at once).
pub struct Line<'a>(&'a Lines);

impl Write for Line<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let lines = self.0;
        let mut pending = lines.shared.pending();
        if pending.len() + line.len() > lines.max {
            lines.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        let first = pending.is_empty();
        // One event, one line (journald makes an entry of each line, and only the first would
        // carry the priority): a newline inside a message (a TOML error) becomes " | ".
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        if memchr::memchr2(b'\n', b'\r', body).is_some() {
            let parts = body.split(|b| *b == b'\n' || *b == b'\r');
            for (i, part) in parts.filter(|p| !p.trim_ascii().is_empty()).enumerate() {
                if i > 0 {
                    pending.extend_from_slice(b" | ");
                }
                pending.extend_from_slice(part.trim_ascii());
            }
            pending.extend_from_slice(&line[body.len()..]);
        } else {
            pending.extend_from_slice(line);
        }
        drop(pending);
        if first {
            lines.writer.unpark();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("sink").clone()).expect("utf-8")
        }
    }

    #[test]
    fn lines_arrive_whole_and_in_order_and_all_are_written_by_the_flush() {
        let sink = Sink::default();
        let (lines, flush) = start(sink.clone(), Duration::from_millis(5), MAX_PENDING).expect("start");
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let lines = lines.clone();
                thread::spawn(move || {
                    for i in 0..1000 {
                        lines.make_writer().write_all(format!("t{t} line {i}\n").as_bytes()).expect("write");
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        drop(flush);
        let text = sink.text();
        assert_eq!(text.lines().count(), 4000);
        for t in 0..4 {
            let mine: Vec<_> = text.lines().filter(|l| l.starts_with(&format!("t{t} "))).collect();
            let expected: Vec<_> = (0..1000).map(|i| format!("t{t} line {i}")).collect();
            assert_eq!(mine, expected, "thread {t}'s lines whole and in order");
        }
    }

    #[test]
    fn a_line_is_written_soon_without_a_flush() {
        let sink = Sink::default();
        let (lines, _flush) = start(sink.clone(), Duration::from_millis(1), MAX_PENDING).expect("start");
        lines.make_writer().write_all(b"hello\n").expect("write");
        // Waits on the condition; the bound only stops a broken writer from hanging the test.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sink.text().is_empty() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(sink.text(), "hello\n");
    }

    #[test]
    fn an_event_with_newlines_is_one_line() {
        // Issue 20 item 13: journald makes an entry of each line.
        let sink = Sink::default();
        let (lines, flush) = start(sink.clone(), Duration::from_millis(1), MAX_PENDING).expect("start");
        lines
            .make_writer()
            .write_all(b"<3>reload failed: TOML parse error at line 2, column 1\n  |\n2 | globl = 5\r\n  | ^^^^^\nunknown field\n")
            .expect("write");
        lines.make_writer().write_all(b"next\n").expect("write");
        drop(flush);
        assert_eq!(
            sink.text(),
            "<3>reload failed: TOML parse error at line 2, column 1 | | | 2 | globl = 5 | | ^^^^^ | unknown field\nnext\n"
        );
    }

    /// An output that blocks until the test lets it go.
    struct Stuck(Arc<(Mutex<bool>, std::sync::Condvar)>, Sink);

    impl Write for Stuck {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let (open, moved) = &*self.0;
            let mut open = open.lock().expect("gate");
            while !*open {
                open = moved.wait(open).expect("gate");
            }
            self.1.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_drops_lines_past_the_bound_and_says_how_many() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let sink = Sink::default();
        let (lines, flush) =
            start(Stuck(gate.clone(), sink.clone()), Duration::from_millis(1), 100).expect("start");
        // The first batch is taken and blocks in the output; then 100 bytes fit, the rest drop.
        lines.make_writer().write_all(b"first\n").expect("write");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !lines.shared.pending().is_empty() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        for i in 0..50 {
            lines.make_writer().write_all(format!("line {i:02}\n").as_bytes()).expect("never fails");
        }
        *gate.0.lock().expect("gate") = true;
        gate.1.notify_all();
        drop(flush);
        let text = sink.text();
        let kept = text.lines().filter(|l| l.starts_with("line ")).count();
        assert_eq!(kept, 12, "100 bytes hold 12 lines of 8: {text}");
        assert!(text.starts_with("first\nline 00\n"), "{text}");
        assert!(text.contains(&format!("email-ratelimit: {} log lines dropped", 50 - kept)), "{text}");
    }
}
