//! The interactive admin shell (`fubar ctl` without a command): the `ctl` commands typed
//! bare, with history, line editing, `help`, and completion of commands and class names.

use std::borrow::Cow;
use std::path::Path;

use clap::{CommandFactory as _, Parser as _};
use fubar_logproto::Class;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::{Context, Editor, Helper, Highlighter, Hinter, Validator};

use super::ctl::run_command;
use crate::admin;
use crate::cli::{AccountCommand, CtlCommand, ShellLine};
use crate::settings::Settings;

/// The words that may follow each command prefix.
fn next_words(prefix: &[&str]) -> Vec<Cow<'static, str>> {
    let classes = || Class::ALL.iter().map(|c| Cow::Borrowed(c.name())).collect();
    let words = |w: &[&'static str]| w.iter().map(|s| Cow::Borrowed(*s)).collect();
    match prefix {
        [] => words(&[
            "status", "stop", "account", "acl", "log", "trace", "untrace", "ssl", "settings",
            "help", "quit",
        ]),
        ["account"] => words(&["update", "delete", "list"]),
        ["acl"] => words(&["allow", "deny", "delete", "list", "topic"]),
        ["acl", "topic"] => words(&["add", "delete", "list", "import"]),
        ["log"] => words(&["open", "close", "out", "list", "dump"]),
        ["log", "open" | "close" | "out" | "dump"] => classes(),
        ["log", "out", _] => words(&["none", "stdout"]),
        ["trace"] => words(&["client", "topic", "list"]),
        ["untrace"] => words(&["client", "topic"]),
        ["ssl"] => words(&["reload"]),
        ["settings"] => Settings::default()
            .flatten()
            .into_iter()
            .map(|(n, _)| Cow::Owned(n))
            .collect(),
        _ => Vec::new(),
    }
}

#[derive(Helper, Hinter, Highlighter, Validator)]
struct ShellHelper;

impl Completer for ShellHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let before = &line[..pos];
        let start = before.rfind(' ').map_or(0, |i| i + 1);
        let done: Vec<&str> = before[..start].split_whitespace().collect();
        let partial = &before[start..];
        let candidates = next_words(&done)
            .into_iter()
            .filter(|w| w.starts_with(partial))
            .map(Cow::into_owned)
            .collect();
        Ok((start, candidates))
    }
}

/// Splits a line into words; double or single quotes keep spaces inside a word.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(ch);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unclosed quote".into());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Runs the shell against the node at `socket` until `quit` or end of input.
pub(crate) fn run(socket: &admin::Target, history: &Path) -> anyhow::Result<()> {
    let mut editor: Editor<ShellHelper, rustyline::history::DefaultHistory> = Editor::new()?;
    editor.set_helper(Some(ShellHelper));
    let _ = editor.load_history(history);
    println!("fubar admin shell on {socket} (help, quit; Tab completes)");
    loop {
        let line = match editor.readline("fubar> ") {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // A password typed on the line is not kept in the history file.
        if !holds_a_password(line) {
            let _ = editor.add_history_entry(line);
        }
        match line {
            "quit" | "exit" => break,
            "help" => {
                println!("{}", ShellLine::command().render_long_help());
                println!(
                    "Also: help (this text), quit or exit (leave; Ctrl-D too). Tab completes."
                );
                continue;
            }
            _ => {}
        }
        if let Err(e) = run_line(socket, line) {
            eprintln!("error: {e:#}");
        }
    }
    let _ = editor.save_history(history);
    Ok(())
}

fn run_line(socket: &admin::Target, line: &str) -> anyhow::Result<()> {
    let words = split_words(line).map_err(anyhow::Error::msg)?;
    let parsed = match ShellLine::try_parse_from(words) {
        Ok(p) => p,
        Err(e) => {
            // clap's own rendering: usage and the valid choices.
            let _ = e.print();
            return Ok(());
        }
    };
    run_command(socket, parsed.command)
}

/// Whether a line may carry a password, read as the shell reads it (words, quotes, any
/// spacing): `account update NAME PASSWORD`, a line that does not parse but begins with the
/// word `account`, and a line whose quotes do not close (it cannot be read at all).
fn holds_a_password(line: &str) -> bool {
    let Ok(words) = split_words(line) else {
        return true;
    };
    match ShellLine::try_parse_from(&words) {
        Ok(parsed) => matches!(
            parsed.command,
            CtlCommand::Account(AccountCommand::Update { .. })
        ),
        // Half a command (`account update alice`), a mistyped one (`account updte alice pw`)
        // or a mistyped flag may still hold one: no `account` line that does not parse is kept.
        Err(_) => words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("account")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::ctl::request_of;

    #[test]
    fn words_and_quotes() {
        assert_eq!(
            split_words("log out trace stdout").unwrap(),
            ["log", "out", "trace", "stdout"]
        );
        assert_eq!(
            split_words("account update 'romeo x' \"a b\"").unwrap(),
            ["account", "update", "romeo x", "a b"]
        );
        assert_eq!(split_words("settings x ''").unwrap(), ["settings", "x", ""]);
        assert!(split_words("a 'b").is_err());
    }

    /// The history filter reads the line: spacing, tabs and quotes do not let a password by.
    #[test]
    fn a_password_line_stays_out_of_history_however_it_is_typed() {
        for line in [
            "account update alice pw",
            "account  update alice pw",
            "account\tupdate\talice pw",
            "  account update alice pw",
            "'account' \"update\" alice pw",
            "account 'update' alice 'p w'",
            "ACCOUNT update alice pw",
            "account update alice",
            "account update alice pw extra",
            "account updte alice pw",
            "account --help update alice pw",
            "account",
            "account update 'alice pw",
        ] {
            assert!(holds_a_password(line), "{line:?} would be kept");
        }
        for line in [
            "status",
            "account list",
            "account delete alice",
            "log out trace stdout",
            "settings mqtt.max_packet_size 100",
        ] {
            assert!(!holds_a_password(line), "{line:?} would be left out");
        }
    }

    #[test]
    fn completion_of_commands_and_classes() {
        let names = |p: &[&str]| -> Vec<String> {
            next_words(p).into_iter().map(Cow::into_owned).collect()
        };
        assert!(names(&[]).contains(&"log".to_owned()));
        assert!(names(&["log", "out"]).contains(&"protocol".to_owned()));
        assert_eq!(names(&["log", "out", "trace"]), ["none", "stdout"]);
        assert!(names(&["settings"]).contains(&"mqtt.max_packet_size".to_owned()));
        assert!(names(&["status"]).is_empty());
    }

    #[test]
    fn shell_lines_parse_like_ctl() {
        let l = ShellLine::try_parse_from(["log", "out", "trace", "stdout"]).unwrap();
        assert!(matches!(request_of(l.command).unwrap(),
            fubar_logproto::admin::AdminRequest::LogOut { ref class, ref redirect } if class == "trace" && redirect == "stdout"));
        assert!(ShellLine::try_parse_from(["nonsense"]).is_err());
    }
}
