//! Benchmark results: samples, statistics, the Markdown table and the JSON file.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

/// One measured value.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// What was measured, e.g. `pgfleet Cluster::start`.
    pub case: String,
    /// Which statistic, e.g. `median`, `p95`.
    pub metric: String,
    /// The value.
    pub value: f64,
    /// Its unit, e.g. `ms`.
    pub unit: String,
}

/// The machine a report was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical cores available to the process.
    pub cores: usize,
    /// Total memory in bytes.
    pub memory: u64,
}

impl Machine {
    /// This machine.
    pub fn detect() -> Self {
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024);
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory,
        }
    }
}

/// A benchmark's results.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Benchmark name.
    pub name: String,
    /// Whether `--quick` was used.
    pub quick: bool,
    /// Where it ran.
    pub machine: Machine,
    /// Every measured value.
    pub results: Vec<Sample>,
    /// Same-run ratios (pgfleet / baseline unless the name says otherwise).
    pub ratios: BTreeMap<String, f64>,
}

impl Report {
    /// An empty report for this machine.
    pub fn new(name: &str, quick: bool) -> Self {
        Self {
            name: name.to_string(),
            quick,
            machine: Machine::detect(),
            results: Vec::new(),
            ratios: BTreeMap::new(),
        }
    }

    /// Records median and p95 of `durations` (in milliseconds) for `case`; returns the median.
    pub fn durations(&mut self, case: &str, durations: &[Duration]) -> f64 {
        let mut ms: Vec<f64> = durations.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let median = percentile(&ms, 50.0);
        self.push(case, "median", median, "ms");
        self.push(case, "p95", percentile(&ms, 95.0), "ms");
        self.push(case, "runs", ms.len() as f64, "count");
        median
    }

    /// Records one value.
    pub fn push(&mut self, case: &str, metric: &str, value: f64, unit: &str) {
        self.results.push(Sample {
            case: case.to_string(),
            metric: metric.to_string(),
            value,
            unit: unit.to_string(),
        });
    }

    /// Records a ratio.
    pub fn ratio(&mut self, name: &str, value: f64) {
        self.ratios.insert(name.to_string(), value);
    }

    /// The results as a Markdown table, ratios below.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "## {}{} ({} cores, {:.1} GiB)\n\n| case | metric | value | unit |\n|---|---|---:|---|\n",
            self.name,
            if self.quick { " (quick)" } else { "" },
            self.machine.cores,
            self.machine.memory as f64 / (1u64 << 30) as f64
        );
        for r in &self.results {
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r.case,
                r.metric,
                fmt_value(r.value),
                r.unit
            ));
        }
        if !self.ratios.is_empty() {
            s.push_str("\n| ratio | value |\n|---|---:|\n");
            for (k, v) in &self.ratios {
                s.push_str(&format!("| {k} | {v:.3} |\n"));
            }
        }
        s
    }

    /// Writes the JSON file, creating its directory.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The `p`-th percentile of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The `p`-th percentile of unsorted `samples` (sorted in place first).
pub fn percentile_of(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    percentile(samples, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&v, 50.0), 5.0);
        assert_eq!(percentile(&v, 95.0), 10.0);
        assert_eq!(percentile(&[3.0], 50.0), 3.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn json_has_the_documented_shape() {
        let mut r = Report::new("x", true);
        r.durations(
            "case a",
            &[Duration::from_millis(2), Duration::from_millis(4)],
        );
        r.ratio("a_vs_b", 1.5);
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        for key in ["name", "quick", "machine", "results", "ratios"] {
            assert!(v.get(key).is_some(), "{key} missing: {v}");
        }
        assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);
        assert_eq!(v["results"][0]["case"], "case a");
        assert_eq!(v["results"][0]["metric"], "median");
        assert_eq!(v["results"][0]["unit"], "ms");
        assert_eq!(v["ratios"]["a_vs_b"], 1.5);
        assert!(
            r.markdown().contains("| case a | median | 2 | ms |"),
            "{}",
            r.markdown()
        );
    }
}
