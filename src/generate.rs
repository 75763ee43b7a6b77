//! `generate`: what is made from the command-line definitions ([`crate::cli`]). The man pages:
//! `email-ratelimit(8)` (the daemon and its commands: clap's synopsis, options and command list
//! from the parser itself, then the hand-written sections in `man/email-ratelimit.8.extra`), one
//! `email-ratelimit-<command>(8)` page per visible command, and `email-ratelimit.toml(5)`
//! (`man/email-ratelimit.toml.5`: every key, its default, an example); and the shell
//! completions.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::Man;

use crate::cli::{Cli, Generated};

const EXTRA_8: &str = include_str!("../man/email-ratelimit.8.extra");
const CONFIG_5: &str = include_str!("../man/email-ratelimit.toml.5");
const MANUAL: &str = "System Manager's Manual";

/// The man pages (`email-ratelimit.1` and one per command, into `dir`) or a completion script
/// (to `out`), from the same definitions the parser uses.
///
/// # Errors
/// When writing fails.
pub fn generate(
    what: Generated,
    dir: Option<&std::path::Path>,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let full = Cli::command();
    let name = full.get_name().to_owned();
    // Completions offer the visible commands only (clap_complete would offer hidden ones too).
    let mut cmd = clap::Command::new("email-ratelimit")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    match what {
        Generated::Man => {
            let dir = dir.ok_or_else(|| std::io::Error::other("--dir is required for man pages"))?;
            write_all(dir).map(|_| ())
        }
        Generated::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, name, out);
            Ok(())
        }
        Generated::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, name, out);
            Ok(())
        }
        Generated::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, name, out);
            Ok(())
        }
    }
}

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
        // A command's examples (its after-help) are an EXAMPLES section, line by line: clap_mangen
        // would fill them into one paragraph.
        let examples = sub.get_after_help().map(ToString::to_string);
        let plain = sub.clone().after_help(clap::builder::Resettable::Reset);
        let man = Man::new(plain).section("8").date(&date).source(&source).manual(MANUAL);
        let mut page = Vec::new();
        man.render(&mut page)?;
        if let Some(text) = examples {
            page.write_all(format!(".SH EXAMPLES\n.nf\n{}\n.fi\n", roff_lines(&text)).as_bytes())?;
        }
        page.write_all(b".SH SEE ALSO\n.BR email-ratelimit (8),\n.BR email-ratelimit.toml (5)\n")?;
        written.push(write(dir, &man.get_filename(), &page)?);
    }
    // email-ratelimit.toml(5).
    let config = CONFIG_5.replace("@DATE@", &date).replace("@VERSION@", env!("CARGO_PKG_VERSION"));
    written.push(write(dir, "email-ratelimit.toml.5", config.as_bytes())?);
    Ok(written)
}

/// Text as roff lines in no-fill mode: backslashes and hyphens escaped, and a line that would
/// start with a control character (`.`, `'`) made safe.
fn roff_lines(text: &str) -> String {
    text.lines()
        .map(|line| {
            let escaped = line.replace('\\', "\\\\").replace('-', "\\-");
            if escaped.starts_with(['.', '\'']) { format!("\\&{escaped}") } else { escaped }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn write(dir: &Path, name: &str, text: &[u8]) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}
