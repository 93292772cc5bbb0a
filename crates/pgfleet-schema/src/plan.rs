//! A plan is data: ordered statements, each with its hazards and whether it may run inside a
//! transaction. It can be printed as SQL (hazards as comments) or JSON, reviewed, stored, and then
//! applied by a driver (`pgfleet-pg`).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Something about a step that an operator must agree to. Names are stable: scripts pass them to
/// `pgfleet apply --allow-hazards`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Hazard {
    /// Drops data (a table, column, schema, sequence, type, extension), or converts stored values
    /// in a way that can change them without an error (a narrower length, scale or precision,
    /// float to integer, dropping a time zone, …; and any type conversion pgfleet does not know).
    DataLoss,
    /// Converts stored values in a way that fails on a value that does not fit (text to integer,
    /// bigint to integer, removing an enum label that rows use, narrowing a sequence's range):
    /// PostgreSQL raises an error, the transaction is rolled back, nothing is lost.
    MayFail,
    /// Rewrites a whole table (e.g. a column type change): slow and locked for its duration.
    TableRewrite,
    /// Holds a strong lock for longer than a moment (e.g. `SET NOT NULL` scans under ACCESS EXCLUSIVE).
    LongLock,
    /// Builds an index on an existing table (concurrently: no writes blocked, but it takes time and I/O).
    IndexBuild,
    /// Scans an existing table to validate a constraint (`VALIDATE CONSTRAINT`; writes are not blocked).
    ValidationScan,
    /// Changes what clients see in a way that may break them: a view loses or changes a column,
    /// a function is dropped and recreated, …
    BreakingChange,
}

impl Hazard {
    /// Every hazard, in a stable order.
    pub const ALL: [Hazard; 7] = [
        Hazard::DataLoss,
        Hazard::MayFail,
        Hazard::TableRewrite,
        Hazard::LongLock,
        Hazard::IndexBuild,
        Hazard::ValidationScan,
        Hazard::BreakingChange,
    ];

    /// The stable name, e.g. `data_loss`.
    pub fn name(self) -> &'static str {
        match self {
            Hazard::DataLoss => "data_loss",
            Hazard::MayFail => "may_fail",
            Hazard::TableRewrite => "table_rewrite",
            Hazard::LongLock => "long_lock",
            Hazard::IndexBuild => "index_build",
            Hazard::ValidationScan => "validation_scan",
            Hazard::BreakingChange => "breaking_change",
        }
    }
}

impl fmt::Display for Hazard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown hazard name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown hazard {0:?}; known hazards: data_loss, may_fail, table_rewrite, long_lock, index_build, validation_scan, breaking_change (or `all`)"
)]
pub struct UnknownHazard(pub String);

impl FromStr for Hazard {
    type Err = UnknownHazard;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hazard::ALL
            .into_iter()
            .find(|h| h.name() == s.trim())
            .ok_or_else(|| UnknownHazard(s.trim().to_string()))
    }
}

/// Parses `--allow-hazards`: a comma-separated list of hazard names, or `all`.
///
/// # Errors
/// [`UnknownHazard`] naming the first unknown name.
pub fn parse_hazard_list(list: &str) -> Result<BTreeSet<Hazard>, UnknownHazard> {
    if list.trim() == "all" {
        return Ok(Hazard::ALL.into_iter().collect());
    }
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(Hazard::from_str)
        .collect()
}

/// One statement of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What it does, in words (e.g. `add column public.users.email`).
    pub description: String,
    /// The SQL statement (one statement, no trailing semicolon needed).
    pub sql: String,
    /// Its hazards.
    pub hazards: Vec<Hazard>,
    /// False for statements that cannot run inside a transaction block (`CREATE INDEX CONCURRENTLY`,
    /// `ALTER TYPE … ADD VALUE` before its use, …). Such steps are written to be idempotent.
    pub transactional: bool,
}

/// An ordered list of steps that turns one model into another.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The steps, in the order they must run.
    pub steps: Vec<Step>,
}

impl Plan {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Every hazard of every step.
    pub fn hazards(&self) -> BTreeSet<Hazard> {
        self.steps
            .iter()
            .flat_map(|s| s.hazards.iter().copied())
            .collect()
    }

    /// Hazards of the plan that are not in `allowed`.
    pub fn disallowed_hazards(&self, allowed: &BTreeSet<Hazard>) -> BTreeSet<Hazard> {
        self.hazards().difference(allowed).copied().collect()
    }

    /// The plan as a SQL script: each step preceded by a comment with its description, its hazards
    /// and whether it runs outside the transaction.
    pub fn to_sql(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            out.push_str(&format!("-- {}\n", step.description));
            if !step.hazards.is_empty() {
                let names: Vec<&str> = step.hazards.iter().map(|h| h.name()).collect();
                out.push_str(&format!("-- hazards: {}\n", names.join(", ")));
            }
            if !step.transactional {
                out.push_str("-- runs outside a transaction\n");
            }
            out.push_str(step.sql.trim_end());
            if !step.sql.trim_end().ends_with(';') {
                out.push(';');
            }
            out.push_str("\n\n");
        }
        out
    }

    /// The plan as pretty JSON: `{"steps": [{"description", "sql", "hazards", "transactional"}]}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hazard_lists_parse() {
        assert_eq!(parse_hazard_list("all").unwrap().len(), 7);
        let set = parse_hazard_list("data_loss, index_build").unwrap();
        assert!(set.contains(&Hazard::DataLoss) && set.contains(&Hazard::IndexBuild));
        assert_eq!(
            parse_hazard_list("may_fail").unwrap(),
            [Hazard::MayFail].into_iter().collect()
        );
        for h in Hazard::ALL {
            assert_eq!(h.name().parse::<Hazard>(), Ok(h));
            assert_eq!(
                serde_json::to_string(&h).unwrap(),
                format!("\"{}\"", h.name()),
                "the JSON name is the stable name"
            );
            assert!(
                UnknownHazard(String::new()).to_string().contains(h.name()),
                "the error lists {h}"
            );
        }
        let err = parse_hazard_list("data_loss,oops").unwrap_err();
        assert!(err.to_string().contains("\"oops\""), "{err}");
        assert!(parse_hazard_list("").unwrap().is_empty());
    }

    #[test]
    fn sql_output_carries_hazards() {
        let plan = Plan {
            steps: vec![Step {
                description: "drop table public.t".into(),
                sql: "DROP TABLE public.t".into(),
                hazards: vec![Hazard::DataLoss],
                transactional: true,
            }],
        };
        let sql = plan.to_sql();
        assert!(
            sql.contains("-- hazards: data_loss\nDROP TABLE public.t;"),
            "{sql}"
        );
        assert!(plan.to_json().contains("\"data_loss\""));
        assert_eq!(
            plan.disallowed_hazards(&BTreeSet::new()),
            [Hazard::DataLoss].into_iter().collect()
        );
    }
}
