//! The search page: a query box with `fubar search`'s syntax (the monitor's own parser, so its
//! errors are the same), a time range, a class filter, a histogram of the matches over the
//! range (click a bar to narrow to it), and the matching events newest first, paged. Each
//! event opens (a `<details>`) to show every field; a field value links to the query with
//! that value added.

use std::collections::HashMap;
use std::fmt::Write as _;

use fubar_logproto::{Class, Event};
use fubar_monitor::search::{Page, PageRequest, SearchRequest};

use super::html::{esc, time, url_encode};

/// What the search form asks, as read from the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SearchForm {
    /// The query text.
    pub(super) query: String,
    /// Only this class (empty: any).
    pub(super) class: String,
    /// `15m`, `1h`, `24h` or `custom`.
    pub(super) range: String,
    /// Custom range start, as typed.
    pub(super) from: String,
    /// Custom range end, as typed.
    pub(super) until: String,
    /// Page number, from 1.
    pub(super) page: String,
}

impl SearchForm {
    /// The form's fields from a decoded query string (defaults: every event of the last 15
    /// minutes, first page).
    pub(super) fn from_query(q: &HashMap<String, String>) -> Self {
        let get = |k: &str| q.get(k).cloned().unwrap_or_default();
        let range = match get("range").as_str() {
            "" => "15m".to_owned(),
            r => r.to_owned(),
        };
        Self {
            query: get("q"),
            class: get("class"),
            range,
            from: get("from"),
            until: get("until"),
            page: get("page"),
        }
    }

    /// This form's link with `query`, `range` and times replaced as given and page 1.
    pub(super) fn link(&self, query: &str, range: &str, from: &str, until: &str) -> String {
        format!(
            "/search?q={}&class={}&range={}&from={}&until={}",
            url_encode(query),
            url_encode(&self.class),
            url_encode(range),
            url_encode(from),
            url_encode(until)
        )
    }

    /// The page request it makes at `now_us`, or why it cannot be made.
    pub(super) fn request(
        &self,
        now_us: i64,
        page_size: usize,
        buckets: usize,
    ) -> Result<PageRequest, String> {
        let class = match self.class.as_str() {
            "" => None,
            name => Some(name.parse::<Class>().map_err(|e| e.to_string())?),
        };
        let (from_us, until_us) = match self.range.as_str() {
            "15m" => (now_us - 15 * 60_000_000, now_us + 1),
            "1h" => (now_us - 3600 * 1_000_000, now_us + 1),
            "24h" => (now_us - 24 * 3600 * 1_000_000, now_us + 1),
            "custom" => (time_us(&self.from)?, time_us(&self.until)?),
            other => {
                return Err(format!(
                    "unknown time range {other:?}: 15m, 1h, 24h or custom"
                ))
            }
        };
        if until_us <= from_us {
            return Err("the time range ends before it starts".to_owned());
        }
        let page = match self.page.as_str() {
            "" => 1,
            p => p
                .parse::<usize>()
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| format!("page {p:?} is not a page number (1, 2, ...)"))?,
        };
        Ok(PageRequest {
            search: SearchRequest {
                query: self.query.clone(),
                class,
                ..SearchRequest::default()
            },
            from_us,
            until_us,
            page_size,
            page: page - 1,
            buckets,
        })
    }
}

/// A time typed in the form: `2026-11-25T14:00` or with seconds (a browser's
/// `datetime-local`, read as UTC), or RFC 3339.
pub(super) fn time_us(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_micros());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    Err(format!(
        "{text:?}: a time is 2026-11-25T14:00 (UTC) or 2026-11-25T14:00:00Z"
    ))
}

/// A time as the custom range inputs take it.
fn input_time(time_us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(time_us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
        .unwrap_or_default()
}

/// The form at the top of the page.
fn form_html(f: &SearchForm) -> String {
    let mut classes = String::from("<option value=\"\">any class</option>");
    for c in Class::ALL {
        let selected = if f.class == c.name() { " selected" } else { "" };
        let _ = write!(classes, "<option{selected}>{}</option>", c.name());
    }
    let mut ranges = String::new();
    for (value, label) in [
        ("15m", "last 15 minutes"),
        ("1h", "last hour"),
        ("24h", "last 24 hours"),
        ("custom", "from … until … (UTC)"),
    ] {
        let selected = if f.range == value { " selected" } else { "" };
        let _ = write!(
            ranges,
            "<option value=\"{value}\"{selected}>{label}</option>"
        );
    }
    format!(
        "<form method=\"get\" action=\"/search\" id=\"search\">\
         <input type=\"text\" name=\"q\" id=\"q\" value=\"{q}\" placeholder=\"client:c1 AND \
         class:access\"> <select name=\"class\" id=\"class\">{classes}</select> \
         <select name=\"range\" id=\"range\">{ranges}</select> \
         <input name=\"from\" id=\"from\" value=\"{from}\" size=\"19\" placeholder=\"from\"> \
         <input name=\"until\" id=\"until\" value=\"{until}\" size=\"19\" placeholder=\"until\"> \
         <button id=\"go\">Search</button></form>\
         <p class=\"muted\">Syntax of <code>fubar search</code>: fields <code>client</code>, \
         <code>user</code>, <code>peer</code>, <code>topic</code>, <code>type</code>, \
         <code>filter</code>, <code>node</code>, <code>class</code>, words of the text; \
         <code>AND</code>, <code>OR</code>, <code>-</code>, quotes.</p>",
        q = esc(&f.query),
        from = esc(&f.from),
        until = esc(&f.until),
    )
}

/// The whole search page body: the form, then the error or the results.
pub(super) fn body(f: &SearchForm, result: &Result<(PageRequest, Page), String>) -> String {
    let mut out = form_html(f);
    match result {
        Err(e) => {
            let _ = write!(out, "<p class=\"error\" id=\"error\">{}</p>", esc(e));
        }
        Ok((request, page)) => {
            out.push_str(&summary(request, page));
            out.push_str(&histogram(f, request, page));
            out.push_str(&events_table(f, &page.events));
            out.push_str(&pager(f, request, page));
        }
    }
    out
}

fn summary(request: &PageRequest, page: &Page) -> String {
    format!(
        "<p id=\"summary\"><b id=\"total\" data-total=\"{total}\">{total}</b> events from {} \
         until {} (UTC)</p>",
        time(request.from_us),
        time(request.until_us),
        total = page.total
    )
}

/// The histogram as inline SVG: one bar per interval, each a link narrowing the range to it.
fn histogram(f: &SearchForm, request: &PageRequest, page: &Page) -> String {
    const WIDTH: usize = 1000;
    const HEIGHT: u64 = 80;
    let bars = page.histogram.len().max(1);
    let step = WIDTH / bars;
    let highest = page
        .histogram
        .iter()
        .map(|b| b.count)
        .max()
        .unwrap_or(0)
        .max(1);
    // Dragging across bars (console.js) goes to this link with the bars' from and until.
    let base = format!(
        "/search?q={}&class={}&range=custom&from=",
        url_encode(&f.query),
        url_encode(&f.class)
    );
    let mut out = format!(
        "<svg id=\"histogram\" data-base=\"{base}\" viewBox=\"0 0 {WIDTH} {}\" width=\"100%\" \
         height=\"100\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"matches over \
         time\">",
        HEIGHT + 2,
        base = esc(&base),
    );
    for (i, b) in page.histogram.iter().enumerate() {
        let h = b.count * HEIGHT / highest;
        let from = b.start_us.max(request.from_us);
        let until = (b.start_us + page.bucket_us).min(request.until_us);
        let link = f.link(&f.query, "custom", &input_time(from), &input_time(until));
        let _ = write!(
            out,
            "<a href=\"{link}\"><rect class=\"hbar\" data-count=\"{count}\" \
             data-from=\"{from}\" data-until=\"{until}\" x=\"{x}\" y=\"{y}\" width=\"{w}\" \
             height=\"{h}\"><title>{count} from {t}</title></rect></a>",
            link = esc(&link),
            from = input_time(from),
            until = input_time(until),
            count = b.count,
            x = i * step,
            y = HEIGHT - h,
            w = step.saturating_sub(1).max(1),
            t = time(from),
        );
    }
    out.push_str(
        "</svg><p class=\"muted\">Click a bar, or drag across bars, to narrow the \
                  range.</p><script src=\"/console.js\"></script>",
    );
    out
}

/// The index field a value of event field `name` is searched in, if it has one.
fn index_field(name: &str) -> Option<&'static str> {
    fubar_monitor::index::KEYWORDS
        .iter()
        .find(|(_, sources)| sources.contains(&name))
        .map(|(field, _)| *field)
}

/// `value` as a query term: quoted, with `\` and `"` escaped.
pub(super) fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A link to the query with `name = value` added (the field's index field, else a phrase).
fn add_term(f: &SearchForm, name: &str, value: &str) -> String {
    let field = match name {
        "node" => Some("node"),
        "class" => Some("class"),
        _ => index_field(name),
    };
    let term = match field {
        Some(field) => format!("{field}:{}", quoted(value)),
        None => quoted(value),
    };
    let query = match f.query.trim() {
        "" => term,
        q => format!("{q} AND {term}"),
    };
    f.link(&query, &f.range, &f.from, &f.until)
}

/// A field value as a link adding it to the query.
fn value_link(f: &SearchForm, name: &str, value: &str) -> String {
    format!(
        "<a class=\"field\" href=\"{}\">{}</a>",
        esc(&add_term(f, name, value)),
        esc(value)
    )
}

fn field<'a>(e: &'a Event, names: &[&str]) -> Option<(&'a str, &'a str)> {
    e.pairs().find(|(k, v)| names.contains(k) && *v != "-")
}

/// The events, newest first: time, node, class, client, topic, and the message, which opens
/// to every field.
fn events_table(f: &SearchForm, events: &[Event]) -> String {
    let mut out = String::from(
        "<table id=\"events\"><thead><tr><th>time (UTC)</th><th>node</th><th>class</th>\
         <th>client</th><th>topic</th><th>event</th></tr></thead><tbody>",
    );
    for e in events {
        let cell = |names: &[&str]| {
            field(e, names)
                .map(|(k, v)| value_link(f, k, v))
                .unwrap_or_default()
        };
        let mut all = String::new();
        let _ = write!(
            all,
            "<tr><th>node</th><td>{}</td></tr><tr><th>epoch</th><td>{}</td></tr>\
             <tr><th>seq</th><td>{}</td></tr>",
            value_link(f, "node", &e.node),
            e.epoch,
            e.seq
        );
        for (k, v) in e.pairs() {
            let _ = write!(
                all,
                "<tr><th>{}</th><td class=\"mono\">{}</td></tr>",
                esc(k),
                value_link(f, k, v)
            );
        }
        let _ = write!(
            out,
            "<tr class=\"event\"><td class=\"mono\">{t}</td><td>{node}</td>\
             <td class=\"class-{class}\">{class_link}</td><td>{client}</td><td>{topic}</td>\
             <td><details><summary>{message}</summary><table class=\"fields\">{all}</table>\
             </details></td></tr>",
            t = time(e.time_us),
            node = value_link(f, "node", &e.node),
            class = e.class.name(),
            class_link = value_link(f, "class", e.class.name()),
            client = cell(&["client", "client_id"]),
            topic = cell(&["topic"]),
            message = esc(&e.message),
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn pager(f: &SearchForm, request: &PageRequest, page: &Page) -> String {
    let pages = page.total.div_ceil(request.page_size.max(1)).max(1);
    let now = request.page + 1;
    let link = |n: usize| {
        format!(
            "{}&page={n}",
            esc(&f.link(&f.query, &f.range, &f.from, &f.until))
        )
    };
    let mut out = format!("<p id=\"pager\">page {now} of {pages} ");
    if now > 1 {
        let _ = write!(out, "<a id=\"newer\" href=\"{}\">newer</a> ", link(now - 1));
    }
    if now < pages {
        let _ = write!(out, "<a id=\"older\" href=\"{}\">older</a>", link(now + 1));
    }
    out.push_str("</p>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form_of(pairs: &[(&str, &str)]) -> SearchForm {
        SearchForm::from_query(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn the_form_becomes_a_page_request_or_a_clear_error() {
        let now = 1_800_000_000_000_000;
        let r = form_of(&[("q", "client:c1")]).request(now, 50, 60).unwrap();
        assert_eq!((r.from_us, r.until_us), (now - 900_000_000, now + 1));
        assert_eq!(r.page, 0);
        let custom = form_of(&[
            ("range", "custom"),
            ("from", "2026-12-05T00:00"),
            ("until", "2026-12-05T01:00:00Z"),
            ("page", "3"),
            ("class", "access"),
        ])
        .request(now, 50, 60)
        .unwrap();
        assert_eq!(custom.until_us - custom.from_us, 3_600_000_000);
        assert_eq!((custom.page, custom.search.class), (2, Some(Class::Access)));
        for (bad, says) in [
            (
                vec![
                    ("range", "custom"),
                    ("from", "2026-12-05T02:00"),
                    ("until", "2026-12-05T01:00"),
                ],
                "ends before",
            ),
            (
                vec![
                    ("range", "custom"),
                    ("from", "yesterday"),
                    ("until", "2026-12-05T01:00"),
                ],
                "a time is",
            ),
            (vec![("range", "1y")], "unknown time range"),
            (vec![("page", "0")], "not a page number"),
            (
                vec![("page", "99999999999999999999999")],
                "not a page number",
            ),
            (vec![("class", "nope")], "nope"),
        ] {
            let e = form_of(&bad).request(now, 50, 60).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_value_link_adds_the_value_to_the_query_and_escapes_it() {
        let f = form_of(&[("q", "class:access")]);
        let link = value_link(&f, "client_id", "<script>\"x\"");
        assert!(link.contains("&lt;script&gt;"), "{link}");
        assert!(!link.contains("<script>"), "{link}");
        let term = add_term(&f, "client_id", "a\"b");
        let decoded = super::super::html::form(term.trim_start_matches("/search?"));
        assert_eq!(decoded["q"], "class:access AND client:\"a\\\"b\"");
        let decoded = super::super::html::form(
            add_term(&f, "reason", "keep alive").trim_start_matches("/search?"),
        );
        assert_eq!(decoded["q"], "class:access AND \"keep alive\"");
    }
}
