//! The exposition in a stable order: families by name, and within a family the
//! series by their labels, so that two scrapes list the same lines in the same
//! order (the exporter's maps have none) and a diff of two scrapes shows only what
//! changed. The lines of one histogram series (its buckets, `_sum`, `_count`) keep
//! their order.

use std::collections::BTreeMap;

/// One family: its `# HELP` and `# TYPE` lines, and its samples by series.
#[derive(Default)]
struct Family<'a> {
    header: Vec<&'a str>,
    series: BTreeMap<String, Vec<&'a str>>,
}

/// `text` (Prometheus text exposition) with families and series in a stable order.
pub(super) fn stable(text: &str) -> String {
    let mut families: BTreeMap<&str, Family<'_>> = BTreeMap::new();
    let mut current: Option<&str> = None;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
        {
            let name = rest.split(' ').next().unwrap_or_default();
            current = Some(name);
            families.entry(name).or_default().header.push(line);
            continue;
        }
        let sample_name = line.split(['{', ' ']).next().unwrap_or_default();
        let family = match current {
            Some(name) if sample_name.starts_with(name) => name,
            _ => {
                current = Some(sample_name);
                sample_name
            }
        };
        families
            .entry(family)
            .or_default()
            .series
            .entry(series_key(line))
            .or_default()
            .push(line);
    }
    let mut out = String::with_capacity(text.len());
    for family in families.values() {
        for line in family.header.iter().chain(family.series.values().flatten()) {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// The labels of a sample without its `le`: the lines of one histogram series share it.
fn series_key(line: &str) -> String {
    let Some((_, rest)) = line.split_once('{') else {
        return String::new();
    };
    let labels = rest.split_once('}').map_or(rest, |(labels, _)| labels);
    labels
        .split(',')
        .filter(|label| !label.starts_with("le="))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_series_come_in_order_and_histograms_stay_whole() {
        let text = "\
# TYPE z_total counter
z_total{reason=\"b\"} 1
z_total{reason=\"a\"} 2

# TYPE a_seconds histogram
a_seconds_bucket{le=\"0.5\"} 1
a_seconds_bucket{le=\"1\"} 2
a_seconds_bucket{le=\"+Inf\"} 2
a_seconds_sum 0.7
a_seconds_count 2
";
        let expected = "\
# TYPE a_seconds histogram
a_seconds_bucket{le=\"0.5\"} 1
a_seconds_bucket{le=\"1\"} 2
a_seconds_bucket{le=\"+Inf\"} 2
a_seconds_sum 0.7
a_seconds_count 2

# TYPE z_total counter
z_total{reason=\"a\"} 2
z_total{reason=\"b\"} 1

";
        assert_eq!(stable(text), expected);
        assert_eq!(stable(&stable(text)), expected);
    }
}
