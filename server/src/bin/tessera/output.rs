//! How the operator commands print the admin endpoint's answers for people: lists as aligned
//! tables, single records as aligned `field  value` lines, times as UTC dates. `--json` bypasses
//! all of this and prints the answer as it came.
//!
//! The answers' records carry engine timestamps (Unix milliseconds) and, for a registration's
//! RT times `issued_at` / `expires_at`, Unix seconds (docs/protocol.md); each column says which.

use serde_json::Value;

/// How one value is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Show {
    /// As it is (strings without quotes, `null` as `-`).
    Plain,
    /// Unix milliseconds as a UTC date; `null` as `-`.
    Millis,
    /// Unix seconds as a UTC date; `null` as `-`.
    Secs,
    /// A number of seconds as a duration (`30d`, `12h`, `90s`).
    Duration,
}

/// A column of a table, or a line of a record view: a heading, where the value is in the record
/// (a dotted path) and how to show it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Col(pub &'static str, pub &'static str, pub Show);

pub(crate) const PT_LIST: &[Col] = &[
    Col("ID", "id", Show::Plain),
    Col("LABEL", "label", Show::Plain),
    Col("KIND", "kind.kind", Show::Plain),
    Col("POLICY", "approval.policy", Show::Plain),
    Col("REGISTRATIONS", "registrations_created", Show::Plain),
    Col("CREATED", "created_at", Show::Millis),
    Col("REVOKED", "revoked_at", Show::Millis),
];

pub(crate) const PT_SHOW: &[Col] = &[
    Col("id", "id", Show::Plain),
    Col("label", "label", Show::Plain),
    Col("kind", "kind.kind", Show::Plain),
    Col("max registrations", "kind.max_registrations", Show::Plain),
    Col("registrations", "registrations_created", Show::Plain),
    Col("approval", "approval.policy", Show::Plain),
    Col("rule", "approval.rule", Show::Plain),
    Col("device ids from", "device_id_policy", Show::Plain),
    Col("RT lifetime", "rt_lifetime_secs", Show::Duration),
    Col("batch", "batch", Show::Plain),
    Col("created", "created_at", Show::Millis),
    Col("expires", "expires_at", Show::Millis),
    Col("revoked", "revoked_at", Show::Millis),
];

pub(crate) const OP_LIST: &[Col] = &[
    Col("ID", "id", Show::Plain),
    Col("STATE", "state", Show::Plain),
    Col("PT", "pt_id", Show::Plain),
    Col("DEVICE", "requested_device_id", Show::Plain),
    Col("NEEDS CODE", "uses_code", Show::Plain),
    Col("CONFLICT", "conflict", Show::Plain),
    Col("SOURCE", "source", Show::Plain),
    Col("EXPIRES", "expires_at", Show::Millis),
];

pub(crate) const OP_SHOW: &[Col] = &[
    Col("id", "id", Show::Plain),
    Col("state", "state", Show::Plain),
    Col("PT", "pt_id", Show::Plain),
    Col("requested device id", "requested_device_id", Show::Plain),
    Col("device id", "device_id", Show::Plain),
    Col("attributes", "attributes", Show::Plain),
    Col("needs code", "uses_code", Show::Plain),
    Col("wrong codes", "code_failures", Show::Plain),
    Col("conflict", "conflict", Show::Plain),
    Col("replaces", "replaces", Show::Plain),
    Col("source", "source", Show::Plain),
    Col("created", "created_at", Show::Millis),
    Col("expires", "expires_at", Show::Millis),
    Col("decided", "decided_at", Show::Millis),
    Col("decided by", "decided_by", Show::Plain),
    Col("reason", "reason", Show::Plain),
    Col("registration", "registration_id", Show::Plain),
    Col("key epoch", "key_epoch", Show::Plain),
];

pub(crate) const REGISTRATIONS: &[Col] = &[
    Col("REGISTRATION", "id", Show::Plain),
    Col("DEVICE", "device_id", Show::Plain),
    Col("STATUS", "status", Show::Plain),
    Col("GENERATION", "generation", Show::Plain),
    Col("EXPIRES", "expires_at", Show::Secs),
    Col("PT", "pt_id", Show::Plain),
];

/// `device show`: the list's columns and what a list leaves out.
pub(crate) const REGISTRATION_DETAIL: &[Col] = &[
    Col("REGISTRATION", "id", Show::Plain),
    Col("STATUS", "status", Show::Plain),
    Col("GENERATION", "generation", Show::Plain),
    Col("KEY EPOCH", "key_epoch", Show::Plain),
    Col("ISSUED", "issued_at", Show::Secs),
    Col("EXPIRES", "expires_at", Show::Secs),
    Col("LIFETIME", "lifetime_secs", Show::Duration),
    Col("PT", "pt_id", Show::Plain),
    Col("OPERATION", "operation_id", Show::Plain),
    Col("CREATED", "created_at", Show::Millis),
    Col("REVOKED", "revoked_at", Show::Millis),
    Col("REASON", "revoke_reason", Show::Plain),
];

pub(crate) const BLOCK: &[Col] = &[
    Col("blocked since", "at", Show::Millis),
    Col("blocked by", "by", Show::Plain),
    Col("reason", "reason", Show::Plain),
];

pub(crate) const KEY_EPOCHS: &[Col] = &[
    Col("EPOCH", "epoch", Show::Plain),
    Col("CURRENT", "current", Show::Plain),
    Col("RT KEY LOADED", "rt_key_loaded", Show::Plain),
    Col("CREATED", "created_at", Show::Millis),
    Col("KEEP UNTIL", "rt_keep_until", Show::Millis),
    Col("RETIRED", "retired_at", Show::Millis),
];

pub(crate) const ADMIN_TOKENS: &[Col] = &[
    Col("ID", "id", Show::Plain),
    Col("NAME", "name", Show::Plain),
    Col("ROLE", "role", Show::Plain),
    Col("CREATED", "created_at", Show::Millis),
    Col("REVOKED", "revoked_at", Show::Millis),
];

pub(crate) const AUDIT: &[Col] = &[
    Col("SEQ", "seq", Show::Plain),
    Col("AT", "at", Show::Millis),
    Col("ACTOR", "actor", Show::Plain),
    Col("ACTION", "action", Show::Plain),
    Col("SUBJECT", "subject", Show::Plain),
    Col("SOURCE", "source", Show::Plain),
];

pub(crate) const LEAKS: &[Col] = &[
    Col("ID", "id", Show::Plain),
    Col("AT", "at", Show::Millis),
    Col("KIND", "kind", Show::Plain),
    Col("PT", "pt_id", Show::Plain),
    Col("REGISTRATION", "registration_id", Show::Plain),
    Col("ACTION", "action", Show::Plain),
    Col("DETAIL", "detail", Show::Plain),
];

/// A UTC date to the second, `2026-12-03 15:53:31Z`.
pub(crate) fn utc(unix_secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix_secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        // Out of the calendar's range: show the number rather than fail.
        Err(_) => unix_secs.to_string(),
    }
}

/// A duration in the largest unit that divides it: `30d`, `12h`, `15m`, `90s`.
pub(crate) fn duration(secs: u64) -> String {
    match secs {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The value at `path` (dot-separated keys; empty for the record itself), `Null` when absent.
fn at<'a>(record: &'a Value, path: &str) -> &'a Value {
    if path.is_empty() {
        return record;
    }
    path.split('.').fold(record, |v, key| &v[key])
}

/// One value as text.
pub(crate) fn cell(record: &Value, col: &Col) -> String {
    let v = at(record, col.1);
    match (v, col.2) {
        (Value::Null, _) => "-".into(),
        (Value::Number(n), Show::Millis) => match n.as_i64() {
            Some(ms) => utc(ms.div_euclid(1000)),
            None => n.to_string(),
        },
        (Value::Number(n), Show::Secs) => match n.as_i64() {
            Some(s) => utc(s),
            None => n.to_string(),
        },
        (Value::Number(n), Show::Duration) => match n.as_u64() {
            Some(s) => duration(s),
            None => n.to_string(),
        },
        (Value::Array(items), _) if items.is_empty() => "-".into(),
        (Value::Array(items), _) => items
            .iter()
            .map(|item| cell(item, &Col("", "", Show::Plain)))
            .collect::<Vec<_>>()
            .join("; "),
        (Value::Object(map), _) if map.is_empty() => "-".into(),
        (Value::Object(map), _) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        (Value::String(s), _) => s.clone(),
        (other, _) => other.to_string(),
    }
}

/// Rows under headings, columns padded to their widest cell.
pub(crate) fn table(rows: &[Value], cols: &[Col]) -> String {
    Layout::default().render(rows, cols, true)
}

/// Column widths that only grow, so that rows printed in several batches (`audit --follow`)
/// line up with the ones before them unless a cell is wider than any before it.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    widths: Vec<usize>,
}

impl Layout {
    /// `rows` padded to the widths so far, widened for these rows; `headings` first if asked.
    pub(crate) fn render(&mut self, rows: &[Value], cols: &[Col], headings: bool) -> String {
        let data: Vec<Vec<String>> = rows
            .iter()
            .map(|r| cols.iter().map(|c| cell(r, c)).collect())
            .collect();
        self.widths.resize(cols.len(), 0);
        for (i, c) in cols.iter().enumerate() {
            let widest = data
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.0.len()])
                .max();
            self.widths[i] = self.widths[i].max(widest.unwrap_or(0));
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&self.widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_owned() + "\n"
        };
        let mut out = String::new();
        if headings {
            let heads: Vec<String> = cols.iter().map(|c| c.0.to_owned()).collect();
            out.push_str(&line(&heads));
        }
        for r in &data {
            out.push_str(&line(r));
        }
        out
    }
}

/// One record as `field  value` lines.
pub(crate) fn record(rec: &Value, cols: &[Col]) -> String {
    let pairs: Vec<(String, String)> = cols
        .iter()
        .map(|c| (c.0.to_owned(), cell(rec, c)))
        .collect();
    pairs_text(&pairs)
}

/// Every leaf of a JSON object as `dotted.key  value` lines, in the object's order (for
/// `status`, whose fields grow with the server).
pub(crate) fn flattened(v: &Value) -> String {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            Value::String(s) => out.push((prefix.to_owned(), s.clone())),
            Value::Null => out.push((prefix.to_owned(), "-".into())),
            other => out.push((prefix.to_owned(), other.to_string())),
        }
    }
    let mut pairs = Vec::new();
    walk("", v, &mut pairs);
    pairs_text(&pairs)
}

fn pairs_text(pairs: &[(String, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_are_utc_to_the_second() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(1_798_905_243), "2027-01-02 15:54:03Z");
        // Leap day, and the last second of a year.
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_609_459_199), "2020-12-31 23:59:59Z");
        assert_eq!(utc(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn durations_use_the_largest_unit_that_divides_them() {
        assert_eq!(duration(2_592_000), "30d");
        assert_eq!(duration(7_200), "2h");
        assert_eq!(duration(900), "15m");
        assert_eq!(duration(90), "90s");
        assert_eq!(duration(0), "0s");
    }

    #[test]
    fn cells_know_milliseconds_from_seconds() {
        let r = json!({ "created_at": 1_796_313_243_837u64, "expires_at": 1_798_905_243u64,
                        "revoked_at": null, "none": [],
                        "replaces": [{ "pt_id": "pt_x", "registration_id": 3 }, { "pt_id": "pt_y", "registration_id": 4 }], "attrs": { "model": "TX-7", "rev": 2 },
                        "empty": {}, "label": "line 3", "n": 4, "ok": true });
        let c = |path, show| cell(&r, &Col("", path, show));
        assert_eq!(c("created_at", Show::Millis), "2026-12-03 15:54:03Z");
        assert_eq!(c("expires_at", Show::Secs), "2027-01-02 15:54:03Z");
        assert_eq!(c("revoked_at", Show::Millis), "-");
        assert_eq!(c("missing.deeper", Show::Plain), "-");
        assert_eq!(
            c("replaces", Show::Plain),
            "pt_id=pt_x, registration_id=3; pt_id=pt_y, registration_id=4"
        );
        assert_eq!(c("none", Show::Plain), "-");
        assert_eq!(c("attrs", Show::Plain), "model=TX-7, rev=2");
        assert_eq!(c("empty", Show::Plain), "-");
        assert_eq!(c("label", Show::Plain), "line 3");
        assert_eq!(c("n", Show::Plain), "4");
        assert_eq!(c("ok", Show::Plain), "true");
    }

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let rows = [
            json!({ "id": 1, "device_id": "pump-17" }),
            json!({ "id": 22, "device_id": "v" }),
        ];
        let cols = [
            Col("ID", "id", Show::Plain),
            Col("DEVICE", "device_id", Show::Plain),
        ];
        assert_eq!(table(&rows, &cols), "ID  DEVICE\n1   pump-17\n22  v\n");
        assert_eq!(table(&[], &cols), "ID  DEVICE\n");
        // Later batches keep the earlier widths, and widen only for wider cells.
        let mut layout = Layout::default();
        assert_eq!(
            layout.render(&rows, &cols, true),
            "ID  DEVICE\n1   pump-17\n22  v\n"
        );
        let next = [json!({ "id": 3, "device_id": "w" })];
        assert_eq!(layout.render(&next, &cols, false), "3   w\n");
        let wide = [json!({ "id": 1234, "device_id": "x" })];
        assert_eq!(layout.render(&wide, &cols, false), "1234  x\n");
    }

    #[test]
    fn records_and_flattened_objects_align_their_values() {
        let r = json!({ "id": "pt_x", "kind": { "kind": "fleet", "max_registrations": 5 } });
        let cols = [
            Col("id", "id", Show::Plain),
            Col("max registrations", "kind.max_registrations", Show::Plain),
        ];
        assert_eq!(
            record(&r, &cols),
            "id                 pt_x\nmax registrations  5\n"
        );
        let status = json!({ "engine": { "counts": { "pts": 1 }, "epoch": 2 }, "long_polls": null, "open": 0 });
        assert_eq!(
            flattened(&status),
            "engine.counts.pts  1\nengine.epoch       2\nlong_polls         -\nopen               0\n"
        );
    }
}
