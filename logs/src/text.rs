//! The text form of an event: one line, as dumps, stdout and daily files show it.

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};
use fubar_logproto::{Class, Event, EventRef};

/// The UTC time of a timestamp in microseconds; out-of-range values show as the Unix epoch.
pub(crate) fn utc(time_us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time_us).unwrap_or(DateTime::UNIX_EPOCH)
}

/// The UTC date of a timestamp in microseconds (the day a daily file is named after).
pub(crate) fn utc_date(time_us: i64) -> NaiveDate {
    utc(time_us).date_naive()
}

/// The current time in microseconds since the Unix epoch, UTC.
pub(crate) fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// `class date time node message k=v ...`, UTC, without a trailing newline.
///
/// Example: `access   2026-11-25 14:27:16.257740 fubar@vm connected client=c1 peer=127.0.0.1:58096`.
/// Values with spaces, `=`, quotes or control characters (and empty values) are double-quoted
/// with backslash escapes; control characters in the message are escaped so a line stays a line.
pub fn format_line(event: &Event) -> String {
    let mut line = String::with_capacity(64 + event.message.len() + 24 * event.fields.len());
    push_line(&mut line, event);
    line
}

/// Appends the text form of `event` to `line` (no newline): the writer reuses one buffer.
pub(crate) fn push_line(line: &mut String, event: &impl Written) {
    let (class, node, message) = (event.class(), event.node(), event.message());
    line.push_str(class.name());
    for _ in class.name().len()..8 {
        line.push(' ');
    }
    line.push(' ');
    push_timestamp(line, event.time_us());
    line.push(' ');
    line.push_str(node);
    line.push(' ');
    push_escaped(line, message);
    event.each_field(&mut |k, v| {
        line.push(' ');
        push_escaped(line, k);
        line.push('=');
        push_value(line, v);
    });
}

/// An event as the writer writes it: owned (from `tracing`), or borrowed (a packet record's
/// view, whose strings are not copied into an event). Both have the same text and the same
/// segment bytes.
pub(crate) trait Written: serde::Serialize {
    fn class(&self) -> Class;
    fn time_us(&self) -> i64;
    fn node(&self) -> &str;
    fn message(&self) -> &str;
    fn each_field(&self, f: &mut dyn FnMut(&str, &str));
}

impl Written for Event {
    fn class(&self) -> Class {
        self.class
    }
    fn time_us(&self) -> i64 {
        self.time_us
    }
    fn node(&self) -> &str {
        &self.node
    }
    fn message(&self) -> &str {
        &self.message
    }
    fn each_field(&self, f: &mut dyn FnMut(&str, &str)) {
        for (k, v) in &self.fields {
            f(k, v);
        }
    }
}

impl Written for EventRef<'_> {
    fn class(&self) -> Class {
        self.class
    }
    fn time_us(&self) -> i64 {
        self.time_us
    }
    fn node(&self) -> &str {
        self.node
    }
    fn message(&self) -> &str {
        self.message
    }
    fn each_field(&self, f: &mut dyn FnMut(&str, &str)) {
        for (k, v) in &self.fields {
            f(k, v);
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS.micros` (UTC) without the cost of a general formatter: this runs once
/// per event on the writer thread.
fn push_timestamp(out: &mut String, time_us: i64) {
    // Out of chrono's range (as the dump of a corrupt record may be): shown as the epoch.
    let time_us = if DateTime::from_timestamp_micros(time_us).is_some() {
        time_us
    } else {
        0
    };
    let secs = time_us.div_euclid(1_000_000);
    let micros = time_us.rem_euclid(1_000_000);
    // The writer writes many events a second: the date and time to the second are formatted
    // once per second and copied.
    LAST_SECOND.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs || last.1.is_empty() {
            last.1.clear();
            push_second(&mut last.1, secs);
            last.0 = secs;
        }
        out.push_str(&last.1);
    });
    out.push('.');
    push_padded(out, micros.unsigned_abs(), 6);
}

/// `n` in decimal, without the general formatter (the writer formats several numbers per
/// event).
pub(crate) fn push_uint(out: &mut String, n: u64) {
    push_padded(out, n, 1);
}

/// `n` in decimal, left-padded with zeros to `width` digits.
fn push_padded(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(digits.len().saturating_sub(width));
    // Only ASCII digits: always UTF-8.
    out.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
}

thread_local! {
    /// The last second `push_timestamp` formatted, and its text.
    static LAST_SECOND: std::cell::RefCell<(i64, String)> =
        const { std::cell::RefCell::new((0, String::new())) };
}

/// `YYYY-MM-DD HH:MM:SS` of `secs` since the Unix epoch.
fn push_second(out: &mut String, secs: i64) {
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    );
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days` algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn push_value(out: &mut String, v: &str) {
    // One pass over the bytes for the common case (printable ASCII, nothing to quote); any
    // other byte asks the char-wise rule.
    let plain = !v.is_empty()
        && (v
            .bytes()
            .all(|b| b > b' ' && b < 0x7f && b != b'=' && b != b'"' && b != b'\\')
            || !v
                .chars()
                .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control()));
    if plain {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => push_char_escaped(out, c),
        }
    }
    out.push('"');
}

/// Text with control characters escaped (messages and keys are not quoted).
fn push_escaped(out: &mut String, s: &str) {
    // One pass for the common case (printable ASCII), the char-wise rule otherwise.
    let plain = s.bytes().all(|b| (b' '..0x7f).contains(&b)) || !s.chars().any(char::is_control);
    if plain {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        push_char_escaped(out, c);
    }
}

fn push_char_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_timestamps_are_written_as_the_formatter_writes_them() {
        for n in [0u64, 7, 10, 65_535, 999_999, 1_000_000, u64::MAX] {
            let mut s = String::new();
            push_uint(&mut s, n);
            assert_eq!(s, n.to_string());
        }
        let mut s = String::new();
        push_padded(&mut s, 42, 6);
        assert_eq!(s, "000042");
        // The cached second is used only for the same second.
        let (mut a, mut b) = (String::new(), String::new());
        push_timestamp(&mut a, 1_795_616_836_257_740);
        push_timestamp(&mut b, 1_795_616_837_000_001);
        assert_eq!(a, "2026-11-25 14:27:16.257740");
        assert_eq!(b, "2026-11-25 14:27:17.000001");
    }
    use fubar_logproto::Class;

    fn event(message: &str, fields: &[(&str, &str)]) -> Event {
        Event {
            node: "fubar@vm".into(),
            epoch: 1,
            seq: 1,
            // 2026-11-25 14:27:16.257740 UTC
            time_us: 1_795_616_836_257_740,
            class: Class::Access,
            message: message.into(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned().into(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn the_example_line() {
        let e = event(
            "connected",
            &[("client", "c1"), ("peer", "127.0.0.1:58096")],
        );
        assert_eq!(
            format_line(&e),
            "access   2026-11-25 14:27:16.257740 fubar@vm connected client=c1 peer=127.0.0.1:58096"
        );
    }

    #[test]
    fn awkward_values_are_quoted_and_escaped() {
        let e = event(
            "two\nlines",
            &[
                ("a", "x y"),
                ("b", "k=v"),
                ("c", "say \"hi\""),
                ("d", ""),
                ("e", "back\\slash"),
            ],
        );
        assert_eq!(
            format_line(&e),
            "access   2026-11-25 14:27:16.257740 fubar@vm two\\nlines a=\"x y\" b=\"k=v\" \
             c=\"say \\\"hi\\\"\" d=\"\" e=\"back\\\\slash\""
        );
    }

    #[test]
    fn out_of_range_time_does_not_panic() {
        let mut e = event("m", &[]);
        e.time_us = i64::MAX;
        assert!(format_line(&e).starts_with("access   1970-01-01 00:00:00.000000 "));
    }

    #[test]
    fn timestamps_match_chrono() {
        for t in [
            0i64,
            1,
            999_999,
            1_795_618_939_054_430,
            951_782_400_000_000,
            -1,
            -86_400_000_001,
            4_102_444_800_000_000,
        ] {
            let mut ours = String::new();
            push_timestamp(&mut ours, t);
            let theirs = utc(t).format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            assert_eq!(ours, theirs, "{t}");
        }
    }
}
