//! `--input jsonl` and `--input journal` over one or more files: a request per line, in time
//! order. Lines a little out of order are sorted, stably, within a window of 10 minutes; a line
//! older than that is an error naming its file and line. `i` is the 0-based line number over all
//! the inputs (skipped lines counted).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::BufRead;

use super::input::{self, InputError, Line};
use super::{ReplayError, Replayed};

/// Reads one line (its text, its 1-based number in its file).
pub type Parse = fn(&str, usize) -> Result<Line, InputError>;

/// How far back a line may go behind the newest line read.
pub const WINDOW_MICROS: i64 = 10 * 60 * 1_000_000;

/// A request waiting in the window: ordered by time, then by line.
struct Pending(i64, usize, Replayed);

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(other.0, other.1))
    }
}

/// The requests of line inputs, in time order.
pub struct Lines {
    parse: Parse,
    /// The daemon's journal: no size or envelope, so retries cannot be told apart.
    journal: bool,
    /// What a line should be, for the error of one that is not.
    expected: &'static str,
    sources: std::vec::IntoIter<(String, Box<dyn BufRead>)>,
    current: Option<(String, Box<dyn BufRead>, usize)>,
    window: BinaryHeap<Reverse<Pending>>,
    newest: i64,
    /// The time of the last request given out.
    given: i64,
    /// Lines read, over all inputs.
    pub lines: usize,
    /// Lines that are not requests (another journal line, an empty line).
    pub skipped: u64,
    done: bool,
}

impl Lines {
    /// `--input jsonl`.
    #[must_use]
    pub fn jsonl(sources: Vec<(String, Box<dyn BufRead>)>) -> Self {
        Self::new(input::jsonl, input::JSONL_EXPECTED, false, sources)
    }

    /// `--input journal`.
    #[must_use]
    pub fn journal(sources: Vec<(String, Box<dyn BufRead>)>) -> Self {
        Self::new(input::journal, input::JOURNAL_EXPECTED, true, sources)
    }

    /// Whether this is the daemon's journal (an approximate input).
    #[must_use]
    pub fn is_journal(&self) -> bool {
        self.journal
    }

    fn new(
        parse: Parse,
        expected: &'static str,
        journal: bool,
        sources: Vec<(String, Box<dyn BufRead>)>,
    ) -> Self {
        Self {
            parse,
            journal,
            expected,
            sources: sources.into_iter(),
            current: None,
            window: BinaryHeap::new(),
            newest: i64::MIN,
            given: i64::MIN,
            lines: 0,
            skipped: 0,
            done: false,
        }
    }

    /// The next request in time order.
    ///
    /// # Errors
    /// A line that does not read, or that is older than the window allows; a read that fails.
    pub fn next_request(&mut self) -> Result<Option<Replayed>, ReplayError> {
        while !self.done {
            if let Some(Reverse(first)) = self.window.peek()
                && first.0 <= self.newest.saturating_sub(WINDOW_MICROS)
            {
                break;
            }
            self.read_one()?;
        }
        Ok(self.window.pop().map(|Reverse(Pending(at, _, r))| {
            self.given = at;
            r
        }))
    }

    /// Reads one line into the window (or notes the end of the inputs).
    fn read_one(&mut self) -> Result<(), ReplayError> {
        let (name, reader, line_no) = match &mut self.current {
            Some(c) => c,
            None => match self.sources.next() {
                Some((name, reader)) => self.current.insert((name, reader, 0)),
                None => {
                    self.done = true;
                    return Ok(());
                }
            },
        };
        let mut text = String::new();
        if reader.read_line(&mut text).map_err(|e| ReplayError::Read(name.clone(), e))? == 0 {
            self.current = None;
            return Ok(());
        }
        *line_no += 1;
        let i = self.lines;
        self.lines += 1;
        let text = text.trim_end_matches(['\n', '\r']);
        let parsed = (self.parse)(text, *line_no).map_err(|error| {
            // Postfix's log given to the JSON readers: say which input reads it.
            if crate::maillog::stamp::split(text).is_some() {
                ReplayError::LogLine { file: name.clone(), line: *line_no }
            } else {
                ReplayError::Line { file: name.clone(), error, expected: self.expected }
            }
        })?;
        let Line::Request(seconds, request) = parsed else {
            self.skipped += 1;
            return Ok(());
        };
        #[allow(clippy::cast_possible_truncation)]
        let at = (seconds * 1e6).round() as i64;
        if at < self.given || at < self.newest.saturating_sub(WINDOW_MICROS) {
            return Err(ReplayError::OutOfOrder { file: name.clone(), line: *line_no });
        }
        self.newest = self.newest.max(at);
        let queue_id = request.queue_id.clone();
        self.window.push(Reverse(Pending(at, i, Replayed { at, i, request, website: false, queue_id })));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(texts: &[(&str, &str)]) -> Lines {
        let sources = texts
            .iter()
            .map(|(name, text)| {
                let reader: Box<dyn BufRead> = Box::new(std::io::Cursor::new(text.as_bytes().to_vec()));
                ((*name).to_owned(), reader)
            })
            .collect();
        Lines::jsonl(sources)
    }

    fn all(l: &mut Lines) -> Result<Vec<(usize, String)>, ReplayError> {
        let mut out = Vec::new();
        while let Some(r) = l.next_request()? {
            out.push((r.i, r.request.sasl_username));
        }
        Ok(out)
    }

    #[test]
    fn lines_a_little_out_of_order_are_sorted_stably() {
        let text = "{\"ts\": 1000, \"sasl_username\": \"a\"}\n\
                    {\"ts\": 1300, \"sasl_username\": \"b\"}\n\
                    \n\
                    {\"ts\": 1000, \"sasl_username\": \"c\"}\n\
                    {\"ts\": 900, \"sasl_username\": \"d\"}\n";
        let mut l =
            lines(&[("one.jsonl", text), ("two.jsonl", "{\"ts\": 1200, \"sasl_username\": \"e\"}\n")]);
        let got = all(&mut l).expect("in the window");
        let names: Vec<&str> = got.iter().map(|(_, u)| u.as_str()).collect();
        assert_eq!(names, ["d", "a", "c", "e", "b"]);
        assert_eq!(got[0].0, 4, "i is the line number over all inputs");
        assert_eq!((l.lines, l.skipped), (6, 1));
    }

    #[test]
    fn a_line_older_than_the_window_names_its_file_and_line() {
        let text = "{\"ts\": 2000, \"sasl_username\": \"a\"}\n{\"ts\": 1399, \"sasl_username\": \"b\"}\n";
        let e = all(&mut lines(&[("x.jsonl", text)])).expect_err("too old");
        assert_eq!(
            e.to_string(),
            "x.jsonl: line 2: more than 10 minutes earlier than a line before it: the input must be in time order"
        );
        let e = all(&mut lines(&[("y.jsonl", "{\"ts\": 1}\nnot json\n")])).expect_err("bad line");
        assert!(e.to_string().starts_with("y.jsonl: line 2: "), "{e}");
        assert!(e.to_string().contains("expected one JSON object per line"), "{e}");
    }
}
