//! The last hour of a few metrics, kept in memory by `pgfleet serve` for the dashboard's charts:
//! provisioning latency, router acquire latency and heals, per minute. Sampled from this process's
//! own Prometheus metrics every [`SAMPLE_EVERY`] (so the charts show what this process did; each
//! `serve` process of a fleet has its own).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the metrics are read.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Minutes kept.
pub const MINUTES: usize = 60;

/// One series' totals at a moment: the sum of observations (seconds, or events) and their count.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Totals {
    sum: f64,
    count: f64,
}

/// One minute of one series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Minute {
    /// Minutes since the Unix epoch.
    pub minute: u64,
    /// Observations in the minute.
    pub count: f64,
    /// Their sum (seconds for latencies).
    pub sum: f64,
}

impl Minute {
    /// The mean in milliseconds (0 without observations).
    pub fn mean_ms(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count * 1000.0
        } else {
            0.0
        }
    }
}

/// The series the dashboard draws: (name, Prometheus metric with the labels it must have, is a
/// histogram). Heals are the router's repairs that repaired something (a request that failed on a
/// missing table, column or schema, repaired and run again).
pub const SERIES: [(&str, &str, bool); 3] = [
    ("provisioning", "pgfleet_provision_duration_seconds", true),
    ("acquire", "pgfleet_router_acquire_duration_seconds", true),
    (
        "heals",
        "pgfleet_router_repairs_total{outcome=\"repaired\"}",
        false,
    ),
];

#[derive(Debug, Default)]
struct Series {
    last: Option<Totals>,
    minutes: VecDeque<Minute>,
}

/// The in-memory history.
#[derive(Debug, Default)]
pub struct History {
    series: Mutex<[Series; 3]>,
}

/// The totals of `metric` in Prometheus text: `_sum`/`_count` of a histogram, or the value of a
/// counter, added over every label set.
fn totals(text: &str, metric: &str, histogram: bool) -> Totals {
    let mut t = Totals::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let value = || {
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let bare = |r: &str| r.starts_with(' ') || r.starts_with('{');
        if histogram {
            if let Some(r) = rest.strip_prefix("_sum")
                && bare(r)
            {
                t.sum += value();
            } else if let Some(r) = rest.strip_prefix("_count")
                && bare(r)
            {
                t.count += value();
            }
        } else if bare(rest) {
            t.count += value();
            t.sum += value();
        }
    }
    t
}

fn now_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 60
}

impl History {
    /// Adds what changed since the last sample of the metrics `text` to the current minute.
    pub fn sample(&self, text: &str) {
        self.sample_at(text, now_minute());
    }

    fn sample_at(&self, text: &str, minute: u64) {
        let mut all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        for (s, (_, metric, histogram)) in all.iter_mut().zip(SERIES) {
            let now = totals(text, metric, histogram);
            let last = s.last.replace(now).unwrap_or(now);
            // A counter that went down was reset (the recorder restarted): count from zero.
            let (dc, ds) = if now.count >= last.count {
                (now.count - last.count, now.sum - last.sum)
            } else {
                (now.count, now.sum)
            };
            match s.minutes.back_mut() {
                Some(m) if m.minute == minute => {
                    m.count += dc;
                    m.sum += ds;
                }
                _ => s.minutes.push_back(Minute {
                    minute,
                    count: dc,
                    sum: ds,
                }),
            }
            while s
                .minutes
                .front()
                .is_some_and(|m| m.minute + MINUTES as u64 <= minute)
            {
                s.minutes.pop_front();
            }
        }
    }

    /// The last hour of series `name` (one of [`SERIES`]), one entry per minute from the oldest
    /// (minutes without samples are zero).
    pub fn last_hour(&self, name: &str) -> Vec<Minute> {
        let now = now_minute();
        let all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = SERIES.iter().position(|(n, ..)| *n == name) else {
            return Vec::new();
        };
        (0..MINUTES as u64)
            .map(|ago| now - (MINUTES as u64 - 1 - ago))
            .map(|minute| {
                all[i]
                    .minutes
                    .iter()
                    .find(|m| m.minute == minute)
                    .copied()
                    .unwrap_or(Minute {
                        minute,
                        ..Minute::default()
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT_1: &str = "# TYPE pgfleet_provision_duration_seconds histogram
pgfleet_provision_duration_seconds_bucket{le=\"0.1\"} 1
pgfleet_provision_duration_seconds_sum 0.5
pgfleet_provision_duration_seconds_count 2
pgfleet_router_acquire_duration_seconds_sum{x=\"a\"} 1
pgfleet_router_acquire_duration_seconds_count{x=\"a\"} 10
pgfleet_router_acquire_duration_seconds_count{x=\"b\"} 10
pgfleet_router_repairs_total{outcome=\"repaired\"} 3
pgfleet_router_repairs_total{outcome=\"nothing\"} 7
pgfleet_corrections_totalx 100
";

    #[test]
    fn totals_add_label_sets_and_ignore_other_metrics() {
        let t = totals(TEXT_1, "pgfleet_router_acquire_duration_seconds", true);
        assert_eq!((t.sum, t.count), (1.0, 20.0));
        let t = totals(TEXT_1, SERIES[2].1, false);
        assert_eq!(t.count, 3.0, "only the repairs that repaired");
    }

    #[test]
    fn minutes_hold_what_changed_between_samples() {
        let h = History::default();
        h.sample_at(TEXT_1, 100);
        let text_2 = TEXT_1
            .replace("_sum 0.5", "_sum 1.5")
            .replace("_count 2", "_count 4")
            .replace("\"repaired\"} 3", "\"repaired\"} 5");
        h.sample_at(&text_2, 101);
        let all = h.series.lock().unwrap();
        let p = &all[0].minutes;
        assert_eq!(p.len(), 2);
        assert_eq!((p[1].count, p[1].sum), (2.0, 1.0));
        assert_eq!(p[1].mean_ms(), 500.0);
        assert_eq!(all[2].minutes[1].count, 2.0);
        drop(all);
        // An hour later the old minutes are gone.
        h.sample_at(&text_2, 101 + MINUTES as u64);
        assert_eq!(h.series.lock().unwrap()[0].minutes.len(), 1);
    }
}
