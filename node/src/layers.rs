//! The node's modules in layers, each using only those below it:
//!
//! ```text
//! commands, tools            start things, parse arguments
//! admin, http, console       the wings: read the node through admin::NodeContext
//! cluster                    peer links, Raft, forwarding; drives the broker
//! broker                     router, registry, retained, connections; tells ClusterHooks
//! settings, logging          what every layer reads
//! mqtt (crate fubar-mqtt)    the sans-IO protocol core
//! ```
//!
//! The test below holds the rule: a module naming one above it fails it.

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Each folder of `src/` and the modules its files must not name.
    const RULES: &[(&str, &[&str])] = &[
        (
            "settings",
            &[
                "broker", "cluster", "admin", "http", "console", "commands", "tools",
            ],
        ),
        (
            "broker",
            &["cluster", "admin", "http", "console", "commands", "tools"],
        ),
        (
            "cluster",
            &["admin", "http", "console", "commands", "tools"],
        ),
        ("admin", &["commands", "tools"]),
        ("http", &["commands", "tools"]),
        ("console", &["commands", "tools"]),
    ];

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("source folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn no_module_names_one_above_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut broken = Vec::new();
        for (folder, above) in RULES {
            let mut files = Vec::new();
            rust_files(&src.join(folder), &mut files);
            assert!(!files.is_empty(), "no sources under src/{folder}");
            for file in files {
                let text = std::fs::read_to_string(&file).expect("source");
                for (n, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    for module in *above {
                        let grouped = code.contains("crate::{")
                            && code
                                .split(|c: char| !c.is_alphanumeric() && c != '_')
                                .any(|word| word == *module);
                        if code.contains(&format!("crate::{module}::"))
                            || code.contains(&format!("crate::{module};"))
                            || grouped
                        {
                            broken.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                        }
                    }
                }
            }
        }
        assert!(
            broken.is_empty(),
            "modules naming a layer above them:\n{}",
            broken.join("\n")
        );
    }
}
