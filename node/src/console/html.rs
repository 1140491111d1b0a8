//! The pieces every console page is made of: HTML escaping, URL encoding and decoding of
//! query strings and forms, and the page frame (navigation, embedded style).
//!
//! Every value that came from outside (an event's fields, a query) goes through [`esc`] before
//! it reaches a page, and through [`url_encode`] before it reaches a link.

use std::collections::HashMap;
use std::fmt::Write as _;

/// `text` escaped for HTML text and attribute values (double-quoted).
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` percent-encoded for a query string value (everything but unreserved characters).
pub(super) fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A query string or `application/x-www-form-urlencoded` body as name → value (the last of
/// a repeated name wins; undecodable bytes become U+FFFD).
pub(super) fn form(encoded: &str) -> HashMap<String, String> {
    encoded
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (url_decode(name), url_decode(value))
        })
        .collect()
}

fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && hex_pair(bytes[i + 1], bytes[i + 2]).is_some() => {
                out.extend(hex_pair(bytes[i + 1], bytes[i + 2]));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_pair(hi: u8, lo: u8) -> Option<u8> {
    let digit = |c: u8| char::from(c).to_digit(16);
    u8::try_from(digit(hi)? * 16 + digit(lo)?).ok()
}

/// The pages in the navigation bar: (path, title).
const NAV: [(&str, &str); 4] = [
    ("/search", "Search"),
    ("/timeline", "Device timeline"),
    ("/tail", "Live tail"),
    ("/cluster", "Cluster"),
];

/// The style of every page (embedded: the console works with no network beyond the monitor).
const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:8px 16px;display:flex;gap:18px;align-items:center}
header a{color:#c9d4ff;text-decoration:none}header a.here{color:#fff;font-weight:600}
header form{margin-left:auto}main{padding:12px 16px}
table{border-collapse:collapse;width:100%;background:#fff}
td,th{border-bottom:1px solid #e3e6ea;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eef0f3}code,.mono{font-family:ui-monospace,monospace;font-size:13px}
.error{background:#fde8e8;border:1px solid #e0a0a0;padding:8px;margin:8px 0}
.muted{color:#6b7280}input[type=text]{width:40em}svg a rect{fill:#4f6bd8}svg a:hover rect{fill:#2c46b0}
details summary{cursor:pointer}.field a{color:#1d4ed8}.bar{fill:#d97706}
.class-warning{color:#b45309}.class-error{color:#b91c1c}";

/// A whole page: title, navigation (`here` highlighted), a sign-out button (with the
/// session's CSRF token) and `body`.
pub(super) fn page(title: &str, here: &str, csrf: &str, body: &str) -> String {
    let mut nav = String::new();
    for (path, name) in NAV {
        let class = if path == here { " class=\"here\"" } else { "" };
        let _ = write!(nav, "<a href=\"{path}\"{class}>{name}</a>");
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title} · fubar console</title><style>{STYLE}</style></head><body>\
         <header><b>fubar</b>{nav}<form method=\"post\" action=\"/sign-out\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button>Sign out</button></form></header><main>{body}</main></body></html>",
        title = esc(title),
        csrf = esc(csrf),
    )
}

/// The page a browser without a session gets: how to get a sign-in URL.
pub(super) fn sign_in_page(refused: bool) -> String {
    let why = if refused {
        "<p class=\"error\" id=\"refused\">This sign-in link is wrong, expired or already used.</p>"
    } else {
        ""
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Sign in · fubar console</title><style>{STYLE}</style></head><body>\
         <header><b>fubar</b> console</header><main>{why}<h1>Sign in</h1>\
         <p>Run <code>fubar console url</code> on the monitor's machine (or with <code>--node \
         NAME@HOST</code> from another) and open the URL it prints. Each URL works once, for a \
         short time.</p></main></body></html>"
    )
}

/// A time in µs since the Unix epoch as `YYYY-MM-DD HH:MM:SS.ffffff` (UTC).
pub(super) fn time(time_us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(time_us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
        .unwrap_or_else(|| time_us.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            esc("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn forms_decode_what_url_encode_encodes() {
        let value = "client:\"a b\" & <x>/é+%";
        let encoded = format!("q={}&page=2&bad=%zz%4", url_encode(value));
        let f = form(&encoded);
        assert_eq!(f["q"], value);
        assert_eq!(f["page"], "2");
        assert_eq!(f["bad"], "%zz%4");
        assert_eq!(form("a=1+2")["a"], "1 2");
    }
}
