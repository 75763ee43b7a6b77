//! The man pages: `email-ratelimit(8)` (the daemon and its commands: clap's synopsis, options and
//! command list from the parser itself, then the hand-written sections in
//! `man/email-ratelimit.8.extra`), one `email-ratelimit-<command>(8)` page per visible command,
//! and `email-ratelimit.toml(5)` (`man/email-ratelimit.toml.5`: every key, its default, an example).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::Man;

use crate::cli::Cli;

const EXTRA_8: &str = include_str!("../man/email-ratelimit.8.extra");
const CONFIG_5: &str = include_str!("../man/email-ratelimit.toml.5");
const MANUAL: &str = "System Manager's Manual";

/// The date on the pages: `SOURCE_DATE_EPOCH` (reproducible builds), else today.
fn date() -> String {
    let at = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .unwrap_or_else(chrono::Utc::now);
    at.format("%Y-%m-%d").to_string()
}

fn source() -> String {
    format!("email-ratelimit {}", env!("CARGO_PKG_VERSION"))
}

/// Writes every page into `dir`; returns their paths.
///
/// # Errors
/// When a file cannot be written.
pub fn write_all(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let (date, source) = (date(), source());
    let mut written = Vec::new();
    // email-ratelimit(8).
    let man = Man::new(cmd.clone()).section("8").date(&date).source(&source).manual(MANUAL);
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    page.write_all(EXTRA_8.as_bytes())?;
    man.render_version_section(&mut page)?;
    written.push(write(dir, &man.get_filename(), &page)?);
    // One page per visible command.
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = Man::new(sub.clone()).section("8").date(&date).source(&source).manual(MANUAL);
        let mut page = Vec::new();
        man.render(&mut page)?;
        page.write_all(b".SH SEE ALSO\n.BR email-ratelimit (8),\n.BR email-ratelimit.toml (5)\n")?;
        written.push(write(dir, &man.get_filename(), &page)?);
    }
    // email-ratelimit.toml(5).
    let config = CONFIG_5.replace("@DATE@", &date).replace("@VERSION@", env!("CARGO_PKG_VERSION"));
    written.push(write(dir, "email-ratelimit.toml.5", config.as_bytes())?);
    Ok(written)
}

fn write(dir: &Path, name: &str, text: &[u8]) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}
