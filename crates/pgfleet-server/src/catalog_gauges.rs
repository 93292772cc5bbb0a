//! The gauges read from the catalog: tenants by state, server and health, and whether that data is
//! current.
//!
//! A task of `serve` reads the tenant counts every [`CatalogGauges::interval`] (and once before
//! the server answers). `/metrics` renders the last read, never waiting for the catalog:
//!
//! - `pgfleet_catalog_up`: 1 when the last read succeeded, 0 when it failed or timed out;
//! - `pgfleet_catalog_data_age_seconds`: how old the data behind the tenant gauges is (absent until
//!   a read has succeeded);
//! - `pgfleet_tenants` and `pgfleet_tenants_health`: published only while that data is at most
//!   [`STALE_AFTER`] intervals old. During a catalog outage they disappear after that, instead of
//!   presenting the last counts as current; they come back with the first successful read.

use std::fmt::Write;
use std::time::{Duration, Instant};

use pgfleet::control::Control;

/// The tenant gauges are withdrawn when their data is older than this many refresh intervals.
pub const STALE_AFTER: u32 = 3;

/// The shortest time a read may take before it counts as failed (a short interval does not make a
/// busy catalog look down).
const MIN_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// (state, server, health, tenants), as the catalog counts them.
type Counts = Vec<(String, String, String, i64)>;

/// The last catalog read behind the tenant gauges.
#[derive(Debug)]
pub struct CatalogGauges {
    interval: Duration,
    last: std::sync::Mutex<Last>,
}

#[derive(Debug, Default)]
struct Last {
    /// Whether the last read succeeded.
    up: bool,
    /// The counts of the last successful read, and when it finished.
    data: Option<(Instant, Counts)>,
}

impl CatalogGauges {
    /// Gauges refreshed every `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: std::sync::Mutex::new(Last::default()),
        }
    }

    /// How often the catalog is read.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Reads the tenant counts once (reconnecting to the catalog when the connection was lost),
    /// within the larger of the interval and 2 s.
    pub async fn refresh(&self, control: &Control) {
        let read = async {
            control.ensure_catalog().await?;
            control.tenant_counts().await
        };
        let result = tokio::time::timeout(self.interval.max(MIN_READ_TIMEOUT), read).await;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(Ok(counts)) => {
                last.up = true;
                last.data = Some((Instant::now(), counts));
            }
            Ok(Err(e)) => {
                metrics::counter!("pgfleet_catalog_errors_total").increment(1);
                if last.up {
                    tracing::warn!("metrics: cannot read the tenant counts from the catalog: {e}");
                }
                last.up = false;
            }
            Err(_) => {
                metrics::counter!("pgfleet_catalog_errors_total").increment(1);
                if last.up {
                    tracing::warn!(
                        "metrics: the catalog did not answer within {:?}",
                        self.interval.max(MIN_READ_TIMEOUT)
                    );
                }
                last.up = false;
            }
        }
    }

    /// Refreshes every interval until `stop` turns true.
    pub async fn run(&self, control: Control, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            self.refresh(&control).await;
        }
    }

    /// The gauges in Prometheus text format, as of `now`.
    pub fn render(&self, now: Instant) -> String {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        family(
            &mut out,
            "pgfleet_catalog_up",
            "1 when this process's last read of the catalog (every metrics interval) succeeded, else 0",
        );
        let _ = writeln!(out, "pgfleet_catalog_up {}", u8::from(last.up));
        let Some((at, counts)) = &last.data else {
            return out;
        };
        let age = now.saturating_duration_since(*at);
        family(
            &mut out,
            "pgfleet_catalog_data_age_seconds",
            "Age of the catalog data behind pgfleet_tenants and pgfleet_tenants_health",
        );
        let _ = writeln!(
            out,
            "pgfleet_catalog_data_age_seconds {:.3}",
            age.as_secs_f64()
        );
        if age > self.interval * STALE_AFTER {
            return out;
        }
        let mut by_state = std::collections::BTreeMap::<(&str, &str), i64>::new();
        let mut by_health = std::collections::BTreeMap::<(&str, &str), i64>::new();
        for (state, server, health, n) in counts {
            *by_state.entry((state, server)).or_default() += n;
            if state == "ready" {
                *by_health.entry((health, server)).or_default() += n;
            }
        }
        family(
            &mut out,
            "pgfleet_tenants",
            "Tenants by state and server (absent while the catalog data is stale)",
        );
        for ((state, server), n) in by_state {
            let _ = writeln!(
                out,
                "pgfleet_tenants{{state=\"{}\",server=\"{}\"}} {n}",
                label(state),
                label(server)
            );
        }
        family(
            &mut out,
            "pgfleet_tenants_health",
            "Ready tenants by health (as last checked) and server (absent while the catalog data is stale)",
        );
        for ((health, server), n) in by_health {
            let _ = writeln!(
                out,
                "pgfleet_tenants_health{{health=\"{}\",server=\"{}\"}} {n}",
                label(health),
                label(server)
            );
        }
        out
    }
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
}

/// A label value escaped for the text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges(counts: Counts, age: Duration, up: bool) -> (CatalogGauges, Instant) {
        let g = CatalogGauges::new(Duration::from_secs(5));
        let now = Instant::now();
        *g.last.lock().unwrap() = Last {
            up,
            data: Some((now, counts)),
        };
        (g, now + age)
    }

    fn counts() -> Counts {
        vec![
            ("ready".into(), "a".into(), "healthy".into(), 3),
            ("ready".into(), "a".into(), "unreachable".into(), 1),
            ("failed".into(), "".into(), "unknown".into(), 2),
            ("ready".into(), "x\"y".into(), "healthy".into(), 1),
        ]
    }

    #[test]
    fn current_data_is_published_with_its_age() {
        let (g, now) = gauges(counts(), Duration::from_millis(1500), true);
        let text = g.render(now);
        assert!(text.contains("pgfleet_catalog_up 1\n"), "{text}");
        assert!(
            text.contains("pgfleet_catalog_data_age_seconds 1.500\n"),
            "{text}"
        );
        assert!(
            text.contains("pgfleet_tenants{state=\"ready\",server=\"a\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("pgfleet_tenants{state=\"failed\",server=\"\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("pgfleet_tenants_health{health=\"unreachable\",server=\"a\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("pgfleet_tenants{state=\"ready\",server=\"x\\\"y\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn stale_data_is_withdrawn_and_the_outage_shown() {
        // Down, but the data is within three intervals: still published, with its age.
        let (g, now) = gauges(counts(), Duration::from_secs(14), false);
        let text = g.render(now);
        assert!(text.contains("pgfleet_catalog_up 0\n"), "{text}");
        assert!(text.contains("pgfleet_tenants{"), "{text}");
        // Older than three intervals: the tenant gauges go.
        let (g, now) = gauges(counts(), Duration::from_secs(16), false);
        let text = g.render(now);
        assert!(text.contains("pgfleet_catalog_up 0\n"), "{text}");
        assert!(
            text.contains("pgfleet_catalog_data_age_seconds 16.000\n"),
            "{text}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("pgfleet_tenants")),
            "{text}"
        );
        assert!(!text.contains("# TYPE pgfleet_tenants"), "{text}");
        // Never read: only whether the catalog is up.
        let g = CatalogGauges::new(Duration::from_secs(5));
        assert_eq!(
            g.render(Instant::now())
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>(),
            ["pgfleet_catalog_up 0"]
        );
    }
}
