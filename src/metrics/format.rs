//! The two exposition formats and which one a scraper gets.
//!
//! prometheus-client writes OpenMetrics, which Prometheus asks for in its `Accept` header.
//! Everything else (curl, `promtool check metrics`, older scrapers) reads the classic Prometheus
//! text format 0.0.4, as client_golang serves by default. For the metric types this daemon
//! exports (counters, gauges, one histogram; no units, exemplars or `_created` samples) the two
//! differ only in that a counter's HELP and TYPE lines name it with its `_total` suffix, and in
//! OpenMetrics' closing `# EOF`; [`to_text`] makes exactly those changes.

use std::collections::HashSet;

/// What a scrape is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    /// OpenMetrics when the `Accept` header lists it (with a q above 0), else the text format.
    #[must_use]
    pub fn negotiate(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.unwrap_or("").split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let q =
                parts.filter_map(|p| p.strip_prefix("q=")).find_map(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
            media.eq_ignore_ascii_case("application/openmetrics-text") && q > 0.0
        });
        if wants_openmetrics { Self::OpenMetrics } else { Self::Text }
    }

    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The same exposition in the text format 0.0.4.
#[must_use]
pub fn to_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let comment = ["# HELP ", "# TYPE "].into_iter().find(|p| line.starts_with(p));
        if let Some(prefix) = comment {
            let rest = &line[prefix.len()..];
            let name = rest.split(' ').next().unwrap_or("");
            if counters.contains(name) {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total");
                out.push_str(&rest[name.len()..]);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_gets_openmetrics_others_text() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("Application/OpenMetrics-Text")), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4")), Format::Text);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text;q=0")), Format::Text);
    }

    #[test]
    fn counters_are_named_with_total_and_eof_goes() {
        let om = "# HELP x_decisions Decisions by outcome.\n# TYPE x_decisions counter\n\
                  x_decisions_total{outcome=\"ok\"} 5\n# HELP x_up 1 when up.\n# TYPE x_up gauge\n\
                  x_up 1\n# HELP x_took_seconds How long.\n# TYPE x_took_seconds histogram\n\
                  x_took_seconds_count 0\n# EOF\n";
        let text = to_text(om);
        assert_eq!(
            text,
            "# HELP x_decisions_total Decisions by outcome.\n# TYPE x_decisions_total counter\n\
             x_decisions_total{outcome=\"ok\"} 5\n# HELP x_up 1 when up.\n# TYPE x_up gauge\n\
             x_up 1\n# HELP x_took_seconds How long.\n# TYPE x_took_seconds histogram\n\
             x_took_seconds_count 0\n"
        );
    }
}
