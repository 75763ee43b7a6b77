//! Issue 21 item 14: the man pages pass `man --warnings` and `lexgrog`; email-ratelimit(8) has
//! real FILES, ENVIRONMENT, SIGNALS, EXIT STATUS and SEE ALSO sections; email-ratelimit.toml(5)
//! names every key the config accepts; the completions and `--help` offer every visible command
//! and no hidden one.

mod common;

use std::process::Command;

use common::{erl, have};

fn run(args: &[&str]) -> String {
    let out = erl().args(args).output().expect("run");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The visible commands, from `--help`.
fn commands() -> Vec<String> {
    let help = run(&["--help"]);
    let list = help.split("Commands:").nth(1).expect("a command list");
    list.lines()
        .skip(1)
        .map_while(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn man_pages_lint_clean_and_say_what_an_admin_looks_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(&["generate", "man", "--dir", &dir.path().display().to_string()]);
    let main = std::fs::read_to_string(dir.path().join("email-ratelimit.8")).expect("email-ratelimit.8");
    for section in ["FILES", "ENVIRONMENT", "SIGNALS", "EXIT STATUS", "SEE ALSO", "EXAMPLES"] {
        assert!(main.contains(&format!("\n.SH {section}\n")), "no {section} in email-ratelimit(8)");
    }
    // Issue 36: FILES names the milter's socket and its unit.
    for file in ["/var/spool/postfix/private/email-ratelimit-milter", "email-ratelimit-milter.socket"] {
        assert!(main.contains(file), "email-ratelimit(8) FILES lacks {file}");
    }
    for command in commands() {
        assert!(dir.path().join(format!("email-ratelimit-{command}.8")).is_file(), "no page for {command}");
    }
    assert!(!dir.path().join("email-ratelimit-generate.8").exists(), "a hidden command's page");
    if !(have("man") && have("lexgrog")) {
        return;
    }
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let path = entry.expect("entry").path();
        let out = Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-l"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .output()
            .expect("man");
        let warned = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && warned.trim().is_empty(), "{}: {warned}", path.display());
        let out = Command::new("lexgrog").arg(&path).output().expect("lexgrog");
        assert!(out.status.success(), "lexgrog {}: {out:?}", path.display());
    }
}

#[test]
fn the_config_page_names_every_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(&["generate", "man", "--dir", &dir.path().display().to_string()]);
    let page = std::fs::read_to_string(dir.path().join("email-ratelimit.toml.5")).expect("page");
    assert!(!page.contains("@VERSION@") && !page.contains("@DATE@"), "placeholders filled");
    // Every key of the effective config (all sections, [database] too), the entries' keys and
    // the [replies] keys.
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[database]\nurl = \"mysql://u:p@localhost/db\"\n").expect("write");
    let mut keys: Vec<String> = run(&["check-config", "--config", &config.display().to_string()])
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.to_owned()))
        .collect();
    keys.extend(
        [
            "enforce_from",
            "tcp",
            "tcp_allow_remote",
            "tcp_allow",
            "socket_group",
            "email",
            "daily",
            "rates",
            "exempt",
            "domain",
            "mailbox_daily",
            "mailbox_rates",
            "mailbox_1d",
            "mailbox_1h",
            "mailbox_other",
            "domain_1d",
            "domain_1h",
            "domain_other",
            "server_1d",
            "server_1h",
            "server_other",
            "locked",
            "oversize_mailbox",
            "oversize_domain",
            "oversize_server",
            "per_message",
            "name",
        ]
        .map(str::to_owned),
    );
    assert!(keys.len() > 50, "{keys:?}");
    // A key is named on a .TP line of its own (as a word: not inside a longer name).
    let word = |line: &str, key: &str| {
        line.match_indices(key).any(|(at, _)| {
            let before =
                line[..at].chars().next_back().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
            let after = line[at + key.len()..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
            before && after
        })
    };
    let lines: Vec<&str> = page.lines().collect();
    for key in keys {
        let named = lines.windows(2).any(|w| w[0] == ".TP" && word(w[1], &key));
        assert!(named, "email-ratelimit.toml(5) has no entry for {key}");
    }
}

#[test]
fn completions_and_help_offer_the_visible_commands_only() {
    let commands = commands();
    for wanted in ["serve", "probe", "status", "trial", "record", "lock", "unlock", "locks"] {
        assert!(commands.iter().any(|c| c == wanted), "--help lacks {wanted}: {commands:?}");
    }
    assert!(!commands.iter().any(|c| c == "generate"), "--help shows a hidden command");
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["generate", shell]);
        assert!(!script.contains("generate"), "{shell} completion offers the hidden generate");
        for command in &commands {
            assert!(script.contains(command.as_str()), "{shell} completion lacks {command}");
        }
    }
}

/// Issue 34: `src/lib.rs`'s map of the modules is the code's import graph, in layers without a
/// circle (`scripts/layers.py` exits 1 otherwise and says what is wrong).
#[test]
fn the_module_map_is_the_import_graph_in_layers() {
    if !have("python3") {
        return;
    }
    let out = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/layers.py"))
        .output()
        .expect("run scripts/layers.py");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("no circles, every import goes to a lower layer"), "{said}");
}

/// Issue 35: `replay --help`, its man page and the README show the three inputs and both ways to
/// replay a server's own mail (the journal on a stock Debian 12, a mail.log elsewhere).
#[test]
fn replay_shows_its_inputs_and_the_two_ways_to_read_postfixs_log() {
    let journal = "journalctl --facility=mail -o short-iso | email-ratelimit replay --input maillog";
    let maillog = "email-ratelimit replay --input maillog";
    let help = run(&["replay", "--help"]);
    for shown in ["jsonl", "journal", "maillog", journal, "/var/log/mail.log*"] {
        assert!(help.contains(shown), "replay --help lacks {shown:?}:\n{help}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    run(&["generate", "man", "--dir", &dir.path().display().to_string()]);
    let page = std::fs::read_to_string(dir.path().join("email-ratelimit-replay.8")).expect("page");
    let roff = |s: &str| s.replace('-', "\\-");
    for shown in ["jsonl", "journal", "maillog", &roff(journal), &roff("/var/log/mail.log*"), ".SH EXAMPLES"]
    {
        assert!(page.contains(shown), "email-ratelimit-replay(8) lacks {shown:?}:\n{page}");
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    for shown in [
        journal,
        &format!("{maillog} --config config.toml /var/log/mail.log*"),
        "--input jsonl\\|journal\\|maillog",
    ] {
        assert!(readme.contains(shown), "README lacks {shown:?}");
    }
}

/// Issue 36: `-c/--config` is described in every command's help.
#[test]
fn every_commands_config_option_is_described() {
    for command in commands() {
        let help = run(&[&command, "-h"]);
        let Some(line) = help.lines().find(|l| l.contains("--config <CONFIG>")) else {
            continue;
        };
        let said = line.split("--config <CONFIG>").nth(1).unwrap_or_default().trim();
        assert!(said.to_lowercase().contains("config"), "{command} -h: {line:?}");
        assert!(line.trim_start().starts_with("-c, --config"), "{command} -h: {line:?}");
    }
    let help = run(&["status", "-h"]);
    assert!(
        help.contains("-c, --config <CONFIG>  Config file [default: /etc/email-ratelimit/config.toml"),
        "{help}"
    );
}
