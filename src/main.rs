//! The `email-ratelimit` command line: parse, run the command (`commands`), and exit with the
//! status its error maps to.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use email_ratelimit::cli::Cli;
use email_ratelimit::commands;

/// jemalloc with its background thread: memory freed after a burst (the config parse of a long
/// mailbox list, a database refresh) goes back to the system within seconds even while the
/// daemon is idle; glibc kept most of it (BENCHMARKS.md, issue 13). The threads are started by
/// `commands` (for `serve`, once its privileges are dropped).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    match commands::run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            for line in e.lines() {
                eprintln!("email-ratelimit: {line}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
