//! `concord audit export`: audit records of a time span, oldest first, as NDJSON or CSV,
//! streamed from the store to a writer (never all in memory).
//!
//! NDJSON keeps everything: each line is the record's place in its chain (chain, position,
//! hashes) and the record itself. CSV is for reading in a spreadsheet: one row per record with
//! the fields an IG lead reads, lists joined with `;`. A cell that a spreadsheet would take for
//! a formula (it starts with `=`, `+`, `-`, `@`, a tab or a carriage return) is written with a
//! leading `'`, so a crafted break-glass reason cannot run in the IG lead's spreadsheet.

use std::io::Write;

use futures_util::TryStreamExt;
use serde_json::{Value, json};

use super::{AuditError, Body, Row};
use crate::store::Store;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line, the whole record.
    Ndjson,
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "recorded",
    "chain",
    "seq",
    "outcome",
    "status",
    "method",
    "target",
    "caller",
    "user",
    "user_name",
    "org",
    "role",
    "relationship",
    "purpose",
    "break_glass_reason",
    "person",
    "disclosed",
    "agreements",
    "withheld",
    "sources",
    "client_address",
    "client_certificate",
    "request_id",
    "policy_hash",
    "hash",
];

fn recorded(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us).map_or_else(|_| us.to_string(), |t| t.to_string())
}

/// One record as an NDJSON line (without the newline).
pub fn ndjson_line(row: &Row) -> String {
    let r = &row.record;
    let record = serde_json::from_str::<Value>(&r.body).unwrap_or(Value::String(r.body.clone()));
    json!({
        "chain": r.chain,
        "seq": r.seq,
        "recorded": recorded(row.columns.recorded_us),
        "record": record,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    })
    .to_string()
}

/// One CSV cell: quoted when it holds a comma, quote or line break; a leading `'` when a
/// spreadsheet would read it as a formula.
pub fn csv_cell(text: &str) -> String {
    let guarded = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// One record as a CSV line (without the line ending).
pub fn csv_line(row: &Row) -> String {
    let r = &row.record;
    let b: Body = serde_json::from_str(&r.body).unwrap_or_default();
    let mut agreements: Vec<&str> = b.disclosed.iter().map(|d| &*d.agreement).collect();
    agreements.sort_unstable();
    agreements.dedup();
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    let cells = [
        recorded(row.columns.recorded_us),
        r.chain.clone(),
        r.seq.to_string(),
        b.outcome.clone(),
        b.status.to_string(),
        b.method.clone(),
        b.target.clone(),
        b.caller.clone(),
        opt(&b.user),
        opt(&b.user_name),
        opt(&b.org),
        opt(&b.role),
        opt(&b.relationship),
        opt(&b.purpose),
        opt(&b.break_glass_reason),
        opt(&b.person),
        b.disclosed
            .iter()
            .map(|d| &*d.reference)
            .collect::<Vec<_>>()
            .join(";"),
        agreements.join(";"),
        b.withheld.to_string(),
        b.sources
            .iter()
            .map(|s| format!("{}:{}", s.source, s.outcome))
            .collect::<Vec<_>>()
            .join(";"),
        opt(&b.client_address),
        opt(&b.client_certificate),
        b.request_id.clone(),
        b.policy_hash.clone(),
        r.hash.clone(),
    ];
    cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes the records recorded in `[since, until)` to `out`, calling `progress` with the
/// count so far every 1,000 records. Returns how many were written.
pub async fn export(
    store: &Store,
    since: Option<i64>,
    until: Option<i64>,
    format: Format,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, AuditError> {
    let io = |e: std::io::Error| AuditError::Failed(format!("cannot write the export: {e}"));
    if format == Format::Csv {
        write!(out, "{}\r\n", CSV_COLUMNS.join(",")).map_err(io)?;
    }
    let mut rows = store.audit_export(since, until);
    let mut written = 0_u64;
    while let Some(row) = rows.try_next().await? {
        let line = match format {
            Format::Ndjson => ndjson_line(&row),
            Format::Csv => csv_line(&row),
        };
        match format {
            Format::Ndjson => writeln!(out, "{line}"),
            Format::Csv => write!(out, "{line}\r\n"),
        }
        .map_err(io)?;
        written += 1;
        if written.is_multiple_of(1000) {
            progress(written);
        }
    }
    out.flush().map_err(io)?;
    progress(written);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("A81001"), "A81001");
        assert_eq!(csv_cell("a, b"), "\"a, b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+44 1234"), "'+44 1234");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell(""), "");
    }
}
