//! Usage and reports (SPEC §6): at each sync the portal adds the traffic a gate counted to
//! the usage of the entries' accounts, per site and UTC day; `gatehouse report` and the
//! admin listener's `/report` give one row per account across all sites, in CSV or JSON.
//!
//! The day is the portal's UTC day when the sync arrives, so traffic of the last
//! `sync_interval` before midnight may count for the next day.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::Portal;
use crate::central::{SyncReply, SyncReport, Usage};
use crate::store::{AccountUsage, StoreError};

impl Portal {
    /// A gate's sync: touch the sessions it used, add its traffic to the accounts' usage
    /// (one store transaction), answer with revocations. A store failure is reported back
    /// (the gate sends the traffic again next time); revocations go out regardless.
    pub async fn sync(&self, report: SyncReport) -> Result<SyncReply, StoreError> {
        let (rows, unknown) = self.sessions.attribute(&report.usage).await?;
        let mut reply = self.sessions.sync(&report).await?;
        if unknown > 0 {
            tracing::info!(
                entries = unknown,
                "usage reported for sessions ended too long ago; dropped"
            );
        }
        if rows.is_empty() {
            return Ok(reply);
        }
        let day = Day::of_unix(super::unix_now()).to_string();
        let count = rows.len();
        let batch = report.usage_batch;
        match self
            .store_call(move |s| s.add_usage_once(&day, &rows, batch))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(
                    rows = count,
                    "usage batch reported again (an answer was lost); counted once"
                )
            }
            Err(e) => {
                tracing::error!(rows = count, error = %crate::http::error::error_chain(&e), "cannot record usage; the gate will report it again");
                reply.usage_refused = true;
            }
        }
        Ok(reply)
    }
}

/// A calendar day (proleptic Gregorian, UTC), as `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day {
    year: i64,
    month: u32,
    day: u32,
}

impl Day {
    /// The UTC day of a Unix time.
    pub fn of_unix(secs: i64) -> Day {
        // Howard Hinnant's civil_from_days: days since 1970-01-01 → (y, m, d).
        let z = secs.div_euclid(86_400) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Day { year, month, day }
    }

    pub fn year(&self) -> i64 {
        self.year
    }

    /// 1–12.
    pub fn month(&self) -> u32 {
        self.month
    }

    /// 1–31.
    pub fn day(&self) -> u32 {
        self.day
    }

    /// Parse `YYYY-MM-DD` exactly (a real date; years 0000–9999).
    pub fn parse(s: &str) -> Option<Day> {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| {
            b[r].iter().try_fold(0u32, |n, c| {
                c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
            })
        };
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days_in_month = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        (1..=days_in_month).contains(&day).then_some(Day {
            year: i64::from(year),
            month,
            day,
        })
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Csv,
    Json,
}

/// What a report covers; the same for the command line and the admin listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// One account, or all.
    pub account: Option<String>,
    /// First and last day included; `None`: open-ended.
    pub from: Option<Day>,
    pub to: Option<Day>,
    pub format: Format,
}

impl Query {
    /// Build a query from the options as given (command line or URL), checking each.
    /// The error is one sentence naming the option and value at fault.
    pub fn new(
        account: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        format: Option<&str>,
    ) -> Result<Query, String> {
        let day = |name: &str, v: Option<&str>| match v {
            None => Ok(None),
            Some(s) => Day::parse(s)
                .map(Some)
                .ok_or_else(|| format!("{name} {s:?} is not a date written YYYY-MM-DD")),
        };
        let (from, to) = (day("from", from)?, day("to", to)?);
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(format!("from {f} is after to {t}"));
        }
        let format = match format {
            None | Some("csv") => Format::Csv,
            Some("json") => Format::Json,
            Some(other) => return Err(format!("format {other:?} is not csv or json")),
        };
        if account.is_some_and(str::is_empty) {
            return Err("account is empty".into());
        }
        Ok(Query {
            account: account.map(str::to_string),
            from,
            to,
            format,
        })
    }

    /// From a URL query string (`account`, `from`, `to`, `format`, each at most once).
    pub fn from_url(query: Option<&str>) -> Result<Query, String> {
        let mut fields: [Option<String>; 4] = Default::default();
        const NAMES: [&str; 4] = ["account", "from", "to", "format"];
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let Some(i) = NAMES.iter().position(|n| *n == k) else {
                return Err(format!("unknown parameter {k:?}"));
            };
            if fields[i].replace(v.into_owned()).is_some() {
                return Err(format!("parameter {k} given twice"));
            }
        }
        let [account, from, to, format] = &fields;
        Query::new(
            account.as_deref(),
            from.as_deref(),
            to.as_deref(),
            format.as_deref(),
        )
    }

    /// Ask the store for this report.
    pub fn run(
        &self,
        store: &dyn crate::store::Store,
    ) -> Result<Vec<AccountUsage>, crate::store::StoreError> {
        let (from, to) = (
            self.from.map(|d| d.to_string()),
            self.to.map(|d| d.to_string()),
        );
        store.usage_report(self.account.as_deref(), from.as_deref(), to.as_deref())
    }

    /// The report's text, and its media type.
    pub fn render(&self, accounts: &[AccountUsage]) -> (String, &'static str) {
        match self.format {
            Format::Csv => (csv(accounts), "text/csv; charset=utf-8"),
            Format::Json => (json(self, accounts), "application/json"),
        }
    }
}

const FIELDS: [&str; 3] = ["requests", "bytes_in", "bytes_out"];

fn values(u: &Usage) -> [u64; 3] {
    [u.requests, u.bytes_in, u.bytes_out]
}

/// One line per account: the accounts merged into it (space-separated), its totals, then
/// each site's (every site that appears in the
/// report gets its three columns, `SITE.requests`…, zero where the account had none).
fn csv(accounts: &[AccountUsage]) -> String {
    let sites: BTreeSet<&str> = accounts
        .iter()
        .flat_map(|a| a.sites.keys().map(String::as_str))
        .collect();
    let mut out = String::from("account,merged");
    for f in FIELDS {
        let _ = write!(out, ",{f}");
    }
    for site in &sites {
        for f in FIELDS {
            let _ = write!(out, ",{site}.{f}");
        }
    }
    out.push('\n');
    for a in accounts {
        out.push_str(&csv_field(&a.account));
        out.push(',');
        out.push_str(&csv_field(&a.merged.join(" ")));
        let mut row: Vec<u64> = values(&a.total()).to_vec();
        for site in &sites {
            row.extend(values(&a.sites.get(*site).copied().unwrap_or_default()));
        }
        for n in row {
            let _ = write!(out, ",{n}");
        }
        out.push('\n');
    }
    out
}

/// RFC 4180 quoting where needed; a name a spreadsheet would take for a formula gets a
/// leading `'` (self-registered account names are chosen by strangers).
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// An array, one object per account: `account`, `merged` (accounts merged into it), `from`, `to` (null when open), `total`
/// and `sites` (by site id), each usage as `{requests, bytes_in, bytes_out}`.
fn json(q: &Query, accounts: &[AccountUsage]) -> String {
    let usage = |u: &Usage| serde_json::json!({"requests": u.requests, "bytes_in": u.bytes_in, "bytes_out": u.bytes_out});
    let rows: Vec<serde_json::Value> = accounts
        .iter()
        .map(|a| {
            let sites: serde_json::Map<String, serde_json::Value> =
                a.sites.iter().map(|(s, u)| (s.clone(), usage(u))).collect();
            serde_json::json!({
                "account": a.account,
                "merged": a.merged,
                "from": q.from.map(|d| d.to_string()),
                "to": q.to.map(|d| d.to_string()),
                "total": usage(&a.total()),
                "sites": sites,
            })
        })
        .collect();
    serde_json::Value::from(rows).to_string() + "\n"
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Unix times map to their UTC day, across leap days and the epoch.
    #[test]
    fn days_of_unix_times() {
        for (secs, day) in [
            (0, "1970-01-01"),
            (-1, "1969-12-31"),
            (951_782_400, "2000-02-29"),
            (1_709_251_199, "2024-02-29"),
            (1_709_251_200, "2024-03-01"),
            (1_795_651_199, "2026-11-25"),
            (1_795_651_200, "2026-11-26"),
        ] {
            assert_eq!(Day::of_unix(secs).to_string(), day, "{secs}");
            assert_eq!(Day::parse(day), Some(Day::of_unix(secs)));
        }
    }

    /// Only real dates written YYYY-MM-DD are accepted.
    #[test]
    fn day_parsing() {
        for bad in [
            "",
            "2026-1-01",
            "2026-13-01",
            "2026-00-10",
            "2026-02-30",
            "2025-02-29",
            "1900-02-29",
            "2026-11-26T00",
            "２０２６-11-26",
            "+026-11-26",
            "2026/11/26",
            "2026-11-0a",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad:?}");
        }
        assert!(Day::parse("2000-02-29").is_some());
        assert!(Day::parse("0000-01-01").is_some());
    }

    /// Query parameters are checked: dates, their order, the format, unknown or repeated
    /// names.
    #[test]
    fn url_queries() {
        let q = Query::from_url(Some(
            "account=alice&from=2026-11-01&to=2026-11-30&format=json",
        ))
        .unwrap();
        assert_eq!(q.account.as_deref(), Some("alice"));
        assert_eq!(q.format, Format::Json);
        assert_eq!(Query::from_url(None).unwrap(), Query::default());
        for bad in [
            "from=yesterday",
            "to=2026-02-30",
            "from=2026-11-02&to=2026-11-01",
            "format=xml",
            "user=alice",
            "account=a&account=b",
            "account=",
        ] {
            assert!(Query::from_url(Some(bad)).is_err(), "{bad}");
        }
    }

    fn sample() -> Vec<AccountUsage> {
        let u = |r, i, o| Usage {
            requests: r,
            bytes_in: i,
            bytes_out: o,
        };
        vec![
            AccountUsage {
                account: "alice".into(),
                merged: vec!["ann".into(), "al".into()],
                sites: BTreeMap::from([("app".into(), u(2, 10, 20)), ("wiki".into(), u(1, 0, 5))]),
            },
            AccountUsage {
                account: "=cmd, \"x\"".into(),
                merged: vec![],
                sites: BTreeMap::from([("wiki".into(), u(4, 4, 4))]),
            },
            AccountUsage {
                account: "carol".into(),
                merged: vec![],
                sites: BTreeMap::new(),
            },
        ]
    }

    /// CSV: a header, one line per account with totals and every site's columns.
    #[test]
    fn csv_report() {
        let (text, media) = Query::default().render(&sample());
        assert_eq!(media, "text/csv; charset=utf-8");
        assert_eq!(
            text,
            "account,merged,requests,bytes_in,bytes_out,app.requests,app.bytes_in,app.bytes_out,wiki.requests,wiki.bytes_in,wiki.bytes_out\n\
             alice,ann al,3,10,25,2,10,20,1,0,5\n\
             \"'=cmd, \"\"x\"\"\",,4,4,4,0,0,0,4,4,4\n\
             carol,,0,0,0,0,0,0,0,0,0\n"
        );
    }

    /// JSON: an array of objects with totals and sites.
    #[test]
    fn json_report() {
        let q = Query::new(None, Some("2026-11-01"), None, Some("json")).unwrap();
        let (text, media) = q.render(&sample());
        assert_eq!(media, "application/json");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["account"], "alice");
        assert_eq!(v[0]["from"], "2026-11-01");
        assert_eq!(v[0]["to"], serde_json::Value::Null);
        assert_eq!(v[0]["total"]["bytes_out"], 25);
        assert_eq!(v[0]["sites"]["wiki"]["requests"], 1);
        assert_eq!(v[2]["sites"], serde_json::json!({}));
    }
}
