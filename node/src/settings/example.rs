//! `fubar config example`: a settings file with every setting, its default and what it is for.
//!
//! Nothing here is written twice: the names and defaults are `Settings::default()` serialized,
//! and each meaning is the first line of the field's own doc comment in this folder's source
//! (read at compile time), so a setting added, renamed or re-documented shows up as it is.

use std::fmt::Write as _;

use super::Settings;

/// The source of every settings struct, as compiled.
const SOURCES: [&str; 4] = [
    include_str!("mod.rs"),
    include_str!("cluster.rs"),
    include_str!("observe.rs"),
    include_str!("retained.rs"),
];

/// One field of a settings struct: its struct, name, and the first line of its doc comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldDoc {
    pub(crate) owner: String,
    pub(crate) name: String,
    pub(crate) meaning: String,
}

/// Every `pub` field of every `pub struct` in the settings source, in source order.
pub(crate) fn field_docs() -> Vec<FieldDoc> {
    let mut out = Vec::new();
    for source in SOURCES {
        let mut owner: Option<String> = None;
        let mut doc: Vec<&str> = Vec::new();
        for line in source.lines() {
            let line = line.trim();
            if line.starts_with("#[cfg(test)]") {
                break; // tests follow
            }
            if let Some(rest) = line.strip_prefix("pub struct ") {
                owner = rest.split([' ', '{']).next().map(str::to_owned);
                doc.clear();
            } else if line == "}" {
                owner = None;
            } else if let Some(text) = line.strip_prefix("///") {
                doc.push(text.trim());
            } else if line.starts_with("#[") {
                // attributes between a doc comment and its field
            } else if let (Some(o), Some(rest)) = (&owner, line.strip_prefix("pub ")) {
                if let Some((name, _)) = rest.split_once(':') {
                    out.push(FieldDoc {
                        owner: o.clone(),
                        name: name.trim().to_owned(),
                        meaning: first_sentence(&doc),
                    });
                }
                doc.clear();
            } else {
                doc.clear();
            }
        }
    }
    out
}

/// The doc comment's text up to its first full stop, on one line.
fn first_sentence(doc: &[&str]) -> String {
    let text = doc.join(" ");
    match text.find(". ") {
        Some(end) => text[..=end].trim().to_owned(),
        None => text.trim().to_owned(),
    }
}

/// The example file: every section of `Settings`, each setting with its meaning as a comment
/// and its default; settings without a default (none set) are shown commented out.
pub fn example() -> String {
    let docs = field_docs();
    let defaults = toml::Table::try_from(Settings::default()).unwrap_or_default();
    let mut out = String::from(
        "# fubar settings: every setting with its default (`fubar config example`).\n\
         # Give a file with the ones you change to `fubar node --config FILE`; flags win over it.\n",
    );
    for section in docs.iter().filter(|d| d.owner == "Settings") {
        let Some(owner) = section_type(section) else {
            continue;
        };
        let values = match defaults.get(&section.name) {
            Some(toml::Value::Table(t)) => t.clone(),
            _ => toml::Table::new(),
        };
        let _ = write!(out, "\n# {}\n[{}]\n", section.meaning, section.name);
        for field in docs.iter().filter(|d| d.owner == owner) {
            let _ = writeln!(out, "# {}", field.meaning);
            match values.get(&field.name) {
                // A value's inline form (`{ trace = "stdout" }` for a map), as `ctl settings`.
                Some(v) => {
                    let _ = writeln!(out, "{} = {v}", field.name);
                }
                None => {
                    let _ = writeln!(out, "# {} =", field.name);
                }
            }
        }
    }
    out
}

/// Every setting's name, `section.key`, in source order.
#[cfg(test)]
pub(crate) fn all_keys() -> Vec<String> {
    let docs = field_docs();
    docs.iter()
        .filter(|d| d.owner != "Settings")
        .filter_map(|d| {
            let section = docs
                .iter()
                .find(|s| s.owner == "Settings" && section_type(s).as_deref() == Some(&d.owner))?;
            Some(format!("{}.{}", section.name, d.name))
        })
        .collect()
}

/// The struct a field of `Settings` is: `pub mqtt: MqttSettings` gives `MqttSettings`.
fn section_type(section: &FieldDoc) -> Option<String> {
    let source = SOURCES.iter().find_map(|s| {
        s.lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("pub {}:", section.name)))
    })?;
    let ty = source.split_once(':')?.1.trim().trim_end_matches(',');
    Some(ty.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_in_the_example_with_its_default_and_a_meaning() {
        let text = example();
        // The example, read back as a settings file, is the defaults.
        let parsed: Settings = toml::from_str(&text).expect("the example parses");
        assert_eq!(parsed, Settings::default());
        // Every setting that has a value is there, preceded by a meaning.
        for (name, value) in Settings::default().flatten() {
            let (section, key) = name.split_once('.').unwrap();
            let header = format!("[{section}]");
            let from = text.find(&header).unwrap_or_else(|| panic!("no {header}"));
            let body = &text[from..];
            let body = &body[..body[1..].find("\n[").map_or(body.len(), |i| i + 1)];
            let line = body
                .lines()
                .position(|l| l.starts_with(&format!("{key} =")))
                .unwrap_or_else(|| panic!("{name} is not in the example"));
            let lines: Vec<&str> = body.lines().collect();
            let meaning = lines[line - 1];
            assert!(
                meaning.starts_with("# ") && meaning.len() > 4,
                "{name} = {value} has no meaning: {meaning:?}"
            );
        }
        // Every field of every section has a doc line (no blank meanings).
        for d in field_docs() {
            assert!(
                !d.meaning.is_empty(),
                "{}.{} has no doc comment",
                d.owner,
                d.name
            );
        }
    }

    #[test]
    fn the_readme_settings_table_has_every_setting() {
        let readme = include_str!("../../../README.md");
        let missing: Vec<String> = field_docs()
            .iter()
            .filter(|d| d.owner != "Settings")
            .filter_map(|d| {
                let section = field_docs().into_iter().find(|s| {
                    s.owner == "Settings" && section_type(s).as_deref() == Some(&d.owner)
                })?;
                let key = format!("| `{}.{}` |", section.name, d.name);
                (!readme.contains(&key)).then_some(key)
            })
            .collect();
        assert!(
            missing.is_empty(),
            "not in README's settings table: {missing:#?}"
        );
    }

    /// Whether a README default cell (`stated`) says the default `value` (its TOML form).
    fn agrees(stated: &str, value: Option<&str>, keys: &[String]) -> bool {
        let value = value.map(|v| v.trim_matches('"'));
        let Some(token) = stated
            .strip_prefix('`')
            .and_then(|s| s.split_once('`'))
            .map(|(t, _)| t.trim_matches('"'))
        else {
            // Prose: every word of the value is in it ("none" for no value).
            return match value {
                None | Some("") | Some("[]") => stated.contains("none"),
                Some(v) => v
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .all(|w| stated.contains(w)),
            };
        };
        match value {
            // Derived at start: from the node (`<data_dir>`, `<hostname>`) or another setting.
            _ if token.contains('<') => true,
            None | Some("") => keys.iter().any(|k| k == token),
            Some(v) => {
                v == token
                    || v == token.trim_start_matches("./")
                    || v.parse::<f64>()
                        .ok()
                        .is_some_and(|v| token.parse() == Ok(v))
            }
        }
    }

    #[test]
    fn the_readme_settings_table_states_each_default_as_it_is() {
        let readme = include_str!("../../../README.md");
        let defaults: std::collections::HashMap<String, String> =
            Settings::default().flatten().into_iter().collect();
        let keys = all_keys();
        let mut wrong = Vec::new();
        for line in readme.lines() {
            let Some((key, rest)) = line.strip_prefix("| `").and_then(|l| l.split_once("` |"))
            else {
                continue;
            };
            if !keys.iter().any(|k| k == key) {
                continue;
            }
            // | key | flag | default | meaning |: the default is the first cell after the key
            // that is not a flag.
            let stated = rest
                .split('|')
                .map(str::trim)
                .take(2)
                .find(|c| !c.is_empty() && !c.starts_with("`--"))
                .unwrap_or("");
            let value = defaults.get(key).map(String::as_str);
            if !agrees(stated, value, &keys) {
                wrong.push(format!(
                    "{key}: README says {stated:?}, the default is {value:?}"
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "README defaults that are not the defaults: {wrong:#?}"
        );
    }

    #[test]
    fn unset_options_are_shown_commented_out() {
        let text = example();
        let mqtts = &text[text.find("[mqtts]").unwrap()..];
        assert!(mqtts.contains("\n# port =\n"), "{mqtts}");
    }
}
