//! How the operator commands print the admin endpoint's answers for people: lists as aligned
//! tables, single records as aligned `field  value` lines, times as UTC dates. `--json` bypasses
//! all of this and prints the answer as it came.
//!
//! Every column reads a field of the answer's record type, so a field the protocol renames is a
//! compile error here. Records carry engine timestamps (Unix milliseconds) and, for a
//! registration's RT times `issued_at` / `expires_at`, Unix seconds (docs/protocol.md).

use tessera_proto::admin::records::{
    AdminTokenRecord, ApprovalPolicy, AttributeCondition, AuditEvent, BlockRecord, KeyEpochInfo,
    LeakSignal, OperationRecord, PtKind, PtRecord, RegistrationRecord,
};
use tessera_proto::admin::StatusAnswer;
use tessera_proto::Timestamp;

/// A column of a table, or a line of a record view: a heading and the value's text.
pub(crate) struct Col<T>(pub &'static str, pub fn(&T) -> String);

/// A time in Unix milliseconds as a UTC date, `-` when absent.
fn millis(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".into(), |t| utc(t.unix_secs() as i64))
}

/// Unix seconds as a UTC date.
fn secs(s: u64) -> String {
    utc(s as i64)
}

/// Text, `-` when absent.
fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The name a value of a protocol enum has on the wire (`single_device`, `manual_with_code`).
fn wire_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "-".into(),
    }
}

fn kind(k: &PtKind) -> String {
    match k {
        PtKind::SingleDevice => "single_device".into(),
        PtKind::Fleet { .. } => "fleet".into(),
    }
}

fn policy(p: &ApprovalPolicy) -> String {
    match p {
        ApprovalPolicy::Manual => "manual",
        ApprovalPolicy::ManualWithCode => "manual_with_code",
        ApprovalPolicy::Automatic => "automatic",
        ApprovalPolicy::AttributeRule(_) => "attribute_rule",
    }
    .into()
}

/// An attribute rule in its text form (`model=TX-7;serial^=SN26`), `-` for other policies.
fn rule(p: &ApprovalPolicy) -> String {
    match p {
        ApprovalPolicy::AttributeRule(r) => r
            .conditions
            .iter()
            .map(|c| match c {
                AttributeCondition::Equals { key, value } => format!("{key}={value}"),
                AttributeCondition::Prefix { key, prefix } => format!("{key}^={prefix}"),
            })
            .collect::<Vec<_>>()
            .join(";"),
        _ => "-".into(),
    }
}

fn yes(b: bool) -> String {
    b.to_string()
}

pub(crate) const PT_LIST: &[Col<PtRecord>] = &[
    Col("ID", |p| p.id.to_string()),
    Col("LABEL", |p| p.label.clone()),
    Col("KIND", |p| kind(&p.kind)),
    Col("POLICY", |p| policy(&p.approval)),
    Col("REGISTRATIONS", |p| p.registrations_created.to_string()),
    Col("CREATED", |p| millis(Some(p.created_at))),
    Col("REVOKED", |p| millis(p.revoked_at)),
];

pub(crate) const PT_SHOW: &[Col<PtRecord>] = &[
    Col("id", |p| p.id.to_string()),
    Col("label", |p| p.label.clone()),
    Col("kind", |p| kind(&p.kind)),
    Col("max registrations", |p| match p.kind {
        PtKind::Fleet { max_registrations } => max_registrations.to_string(),
        PtKind::SingleDevice => "-".into(),
    }),
    Col("registrations", |p| p.registrations_created.to_string()),
    Col("approval", |p| policy(&p.approval)),
    Col("rule", |p| rule(&p.approval)),
    Col("device ids from", |p| wire_name(&p.device_id_policy)),
    Col("RT lifetime", |p| duration(p.rt_lifetime_secs)),
    Col("batch", |p| opt(p.batch.as_deref())),
    Col("created", |p| millis(Some(p.created_at))),
    Col("expires", |p| millis(p.expires_at)),
    Col("revoked", |p| millis(p.revoked_at)),
];

pub(crate) const OP_LIST: &[Col<OperationRecord>] = &[
    Col("ID", |o| o.id.to_string()),
    Col("STATE", |o| o.state.to_string()),
    Col("PT", |o| o.pt_id.to_string()),
    Col("DEVICE", |o| opt(o.requested_device_id.as_ref())),
    Col("NEEDS CODE", |o| yes(o.uses_code)),
    Col("CONFLICT", |o| yes(o.conflict)),
    Col("SOURCE", |o| opt(o.source.as_deref())),
    Col("EXPIRES", |o| millis(Some(o.expires_at))),
];

pub(crate) const OP_SHOW: &[Col<OperationRecord>] = &[
    Col("id", |o| o.id.to_string()),
    Col("state", |o| o.state.to_string()),
    Col("PT", |o| o.pt_id.to_string()),
    Col("requested device id", |o| {
        opt(o.requested_device_id.as_ref())
    }),
    Col("device id", |o| opt(o.device_id.as_ref())),
    Col("attributes", |o| {
        let pairs: Vec<String> = o
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if pairs.is_empty() {
            "-".into()
        } else {
            pairs.join(", ")
        }
    }),
    Col("needs code", |o| yes(o.uses_code)),
    Col("wrong codes", |o| o.code_failures.to_string()),
    Col("conflict", |o| yes(o.conflict)),
    Col("replaces", |o| {
        let r: Vec<String> = o
            .replaces
            .iter()
            .map(|r| format!("pt_id={}, registration_id={}", r.pt_id, r.registration_id))
            .collect();
        if r.is_empty() {
            "-".into()
        } else {
            r.join("; ")
        }
    }),
    Col("source", |o| opt(o.source.as_deref())),
    Col("created", |o| millis(Some(o.created_at))),
    Col("expires", |o| millis(Some(o.expires_at))),
    Col("decided", |o| millis(o.decided_at)),
    Col("decided by", |o| opt(o.decided_by.as_deref())),
    Col("reason", |o| opt(o.reason.as_deref())),
    Col("registration", |o| opt(o.registration_id)),
    Col("key epoch", |o| o.key_epoch.to_string()),
];

pub(crate) const REGISTRATIONS: &[Col<RegistrationRecord>] = &[
    Col("REGISTRATION", |r| r.id.to_string()),
    Col("DEVICE", |r| r.device_id.to_string()),
    Col("STATUS", |r| wire_name(&r.status)),
    Col("GENERATION", |r| r.generation.to_string()),
    Col("EXPIRES", |r| secs(r.expires_at)),
    Col("PT", |r| r.pt_id.to_string()),
];

/// `device show`: the list's columns and what a list leaves out.
pub(crate) const REGISTRATION_DETAIL: &[Col<RegistrationRecord>] = &[
    Col("REGISTRATION", |r| r.id.to_string()),
    Col("STATUS", |r| wire_name(&r.status)),
    Col("GENERATION", |r| r.generation.to_string()),
    Col("KEY EPOCH", |r| r.key_epoch.to_string()),
    Col("ISSUED", |r| secs(r.issued_at)),
    Col("EXPIRES", |r| secs(r.expires_at)),
    Col("LIFETIME", |r| duration(r.lifetime_secs)),
    Col("PT", |r| r.pt_id.to_string()),
    Col("OPERATION", |r| r.operation_id.to_string()),
    Col("CREATED", |r| millis(Some(r.created_at))),
    Col("REVOKED", |r| millis(r.revoked_at)),
    Col("REASON", |r| opt(r.revoke_reason.as_deref())),
];

pub(crate) const BLOCK: &[Col<BlockRecord>] = &[
    Col("blocked since", |b| millis(Some(b.at))),
    Col("blocked by", |b| b.by.clone()),
    Col("reason", |b| b.reason.clone()),
];

pub(crate) const KEY_EPOCHS: &[Col<KeyEpochInfo>] = &[
    Col("EPOCH", |k| k.record.epoch.to_string()),
    Col("CURRENT", |k| yes(k.current)),
    Col("RT KEY LOADED", |k| yes(k.rt_key_loaded)),
    Col("CREATED", |k| millis(Some(k.record.created_at))),
    Col("KEEP UNTIL", |k| millis(k.record.rt_keep_until)),
    Col("RETIRED", |k| millis(k.record.retired_at)),
];

pub(crate) const ADMIN_TOKENS: &[Col<AdminTokenRecord>] = &[
    Col("ID", |t| t.id.to_string()),
    Col("NAME", |t| t.name.clone()),
    Col("ROLE", |t| t.role.as_str().into()),
    Col("CREATED", |t| millis(Some(t.created_at))),
    Col("REVOKED", |t| millis(t.revoked_at)),
];

pub(crate) const AUDIT: &[Col<AuditEvent>] = &[
    Col("SEQ", |e| e.seq.to_string()),
    Col("AT", |e| millis(Some(e.at))),
    Col("ACTOR", |e| e.actor.clone()),
    Col("ACTION", |e| e.action.clone()),
    Col("SUBJECT", |e| e.subject.clone()),
    Col("SOURCE", |e| opt(e.source.as_deref())),
];

pub(crate) const LEAKS: &[Col<LeakSignal>] = &[
    Col("ID", |l| l.id.to_string()),
    Col("AT", |l| millis(Some(l.at))),
    Col("KIND", |l| l.kind.as_str().into()),
    Col("PT", |l| opt(l.pt_id.as_deref())),
    Col("REGISTRATION", |l| opt(l.registration_id)),
    Col("ACTION", |l| l.action.clone()),
    Col("DETAIL", |l| l.detail.clone()),
];

/// `status`: each counter on a line of its own.
pub(crate) fn status(s: &StatusAnswer) -> String {
    let e = &s.engine;
    let mut pairs: Vec<(String, String)> = vec![
        ("engine.live_families".into(), e.live_families.to_string()),
        (
            "engine.family_table_bytes".into(),
            e.family_table_bytes.to_string(),
        ),
        (
            "engine.current_key_epoch".into(),
            e.current_key_epoch.to_string(),
        ),
        ("engine.counts.pts".into(), e.counts.pts.to_string()),
        (
            "engine.counts.pending_operations".into(),
            e.counts.pending_operations.to_string(),
        ),
        (
            "engine.counts.active_registrations".into(),
            e.counts.active_registrations.to_string(),
        ),
        (
            "engine.counts.audit_events".into(),
            e.counts.audit_events.to_string(),
        ),
        (
            "engine.counts.leak_signals".into(),
            e.counts.leak_signals.to_string(),
        ),
        (
            "engine.commits.batches".into(),
            e.commits.batches.to_string(),
        ),
        ("engine.commits.jobs".into(), e.commits.jobs.to_string()),
        (
            "engine.commits.failed_commits".into(),
            e.commits.failed_commits.to_string(),
        ),
        ("engine.failed_resumes".into(), e.failed_resumes.to_string()),
        (
            "engine.suppressed_signals".into(),
            e.suppressed_signals.to_string(),
        ),
    ];
    match &e.feed {
        None => pairs.push(("engine.feed".into(), "-".into())),
        Some(f) => pairs.extend([
            ("engine.feed.position".into(), f.position.to_string()),
            ("engine.feed.head".into(), f.head.to_string()),
            ("engine.feed.lag".into(), f.lag.to_string()),
            (
                "engine.feed.since_caught_up_ms".into(),
                opt(f.since_caught_up_ms),
            ),
            ("engine.feed.current".into(), yes(f.current)),
        ]),
    }
    pairs.extend([
        ("open_connections".into(), s.open_connections.to_string()),
        ("long_polls".into(), s.long_polls.to_string()),
        ("revocation_polls".into(), s.revocation_polls.to_string()),
        ("retries_sent".into(), s.retries_sent.to_string()),
        ("tls_resumed".into(), s.tls_resumed.to_string()),
        ("server_time_ms".into(), s.server_time_ms.to_string()),
    ]);
    pairs_text(&pairs)
}

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

/// Rows under headings, columns padded to their widest cell.
pub(crate) fn table<T>(rows: &[T], cols: &[Col<T>]) -> String {
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
    pub(crate) fn render<T>(&mut self, rows: &[T], cols: &[Col<T>], headings: bool) -> String {
        let data: Vec<Vec<String>> = rows
            .iter()
            .map(|r| cols.iter().map(|c| (c.1)(r)).collect())
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
pub(crate) fn record<T>(rec: &T, cols: &[Col<T>]) -> String {
    let pairs: Vec<(String, String)> = cols.iter().map(|c| (c.0.to_owned(), (c.1)(rec))).collect();
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

    /// A row of the table tests.
    struct Row {
        id: u64,
        device_id: &'static str,
    }

    const COLS: &[Col<Row>] = &[
        Col("ID", |r| r.id.to_string()),
        Col("DEVICE", |r| r.device_id.into()),
    ];

    fn row(id: u64, device_id: &'static str) -> Row {
        Row { id, device_id }
    }

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let rows = [row(1, "pump-17"), row(22, "v")];
        assert_eq!(table(&rows, COLS), "ID  DEVICE\n1   pump-17\n22  v\n");
        assert_eq!(table(&[], COLS), "ID  DEVICE\n");
        // Later batches keep the earlier widths, and widen only for wider cells.
        let mut layout = Layout::default();
        assert_eq!(
            layout.render(&rows, COLS, true),
            "ID  DEVICE\n1   pump-17\n22  v\n"
        );
        assert_eq!(layout.render(&[row(3, "w")], COLS, false), "3   w\n");
        assert_eq!(layout.render(&[row(1234, "x")], COLS, false), "1234  x\n");
    }

    #[test]
    fn records_align_their_values() {
        let cols: &[Col<Row>] = &[
            Col("id", |r| r.id.to_string()),
            Col("max registrations", |r| r.device_id.into()),
        ];
        assert_eq!(
            record(&row(7, "5"), cols),
            "id                 7\nmax registrations  5\n"
        );
    }

    #[test]
    fn times_and_absent_values() {
        assert_eq!(
            millis(Some(Timestamp::from_unix_millis(1_796_313_243_837))),
            "2026-12-03 15:54:03Z"
        );
        assert_eq!(secs(1_798_905_243), "2027-01-02 15:54:03Z");
        assert_eq!(millis(None), "-");
        assert_eq!(opt(None::<u64>), "-");
        assert_eq!(rule(&ApprovalPolicy::Manual), "-");
        let r: tessera_proto::admin::records::AttributeRule =
            "model=TX-7;serial^=SN26".parse().unwrap();
        assert_eq!(
            rule(&ApprovalPolicy::AttributeRule(r)),
            "model=TX-7;serial^=SN26"
        );
    }
}
