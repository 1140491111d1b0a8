//! How a benchmark's result is printed: a table for a person, or one JSON object (with a
//! `"bench"` key naming the benchmark) for a script.

use serde::Serialize;

/// A benchmark's result.
pub trait Report: Serialize {
    /// The benchmark's name, as in `fubar bench NAME`.
    fn bench(&self) -> &'static str;
    /// The table's lines: label and value, in order.
    fn rows(&self) -> Vec<(String, String)>;
}

#[derive(Serialize)]
struct Tagged<'a, R> {
    bench: &'static str,
    #[serde(flatten)]
    report: &'a R,
}

/// The report as one line of JSON.
pub fn to_json(report: &impl Report) -> String {
    let tagged = Tagged {
        bench: report.bench(),
        report,
    };
    serde_json::to_string(&tagged).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The report as an aligned two-column table.
pub fn to_table(report: &impl Report) -> String {
    let rows = report.rows();
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (label, value) in rows {
        out.push_str(&format!("{label:<width$}  {value}\n"));
    }
    out
}

/// Prints the report to stdout, as JSON or as a table.
pub fn print(report: &impl Report, json: bool) {
    if json {
        println!("{}", to_json(report));
    } else {
        print!("{}", to_table(report));
    }
}

/// What a report's title line adds when Ctrl-C cut the run short.
pub fn interrupted_note(interrupted: bool) -> &'static str {
    if interrupted {
        " (interrupted)"
    } else {
        ""
    }
}

/// A count with thousands separators: `1234567` → `1,234,567`.
pub fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Example {
        sent: u64,
        reason: String,
    }

    impl Report for Example {
        fn bench(&self) -> &'static str {
            "example"
        }
        fn rows(&self) -> Vec<(String, String)> {
            vec![
                ("sent".into(), thousands(self.sent as f64)),
                ("reason".into(), self.reason.clone()),
            ]
        }
    }

    #[test]
    fn json_is_one_tagged_object_and_escapes_strings() {
        let r = Example {
            sent: 3,
            reason: "a \"quoted\" reason".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&to_json(&r)).unwrap();
        assert_eq!(v["bench"], "example");
        assert_eq!(v["sent"], 3);
        assert_eq!(v["reason"], "a \"quoted\" reason");
        assert!(!to_json(&r).contains('\n'));
    }

    #[test]
    fn table_aligns_values() {
        let r = Example {
            sent: 1_234_567,
            reason: "x".into(),
        };
        assert_eq!(to_table(&r), "sent    1,234,567\nreason  x\n");
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(-12345.4), "-12,345");
    }
}
