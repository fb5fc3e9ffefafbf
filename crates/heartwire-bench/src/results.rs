//! `heartwire bench report`: RESULTS.md from the figures of every server of one run —
//! the machine and the date, one row per figure with each server's value and each
//! peer's ratio (peer ÷ heartwire for costs, heartwire ÷ peer for rates: above 1
//! means heartwire wins), the targets met and not met, the figures that are missing
//! and why, and hand-written notes appended as they are.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;

use super::chart;
use super::figures::{self, Better, Figure};

/// The server the ratios are about.
const HEARTWIRE: &str = "heartwire";
/// The peers the targets name.
const NODE_WS: &str = "node-ws";
const FLOOR: &str = "tokio-tungstenite";
const FASTWEBSOCKETS: &str = "fastwebsockets";
/// heartwire with JWT verification, its connections identified by a token.
const HEARTWIRE_JWT: &str = "heartwire-jwt";
/// What the names of the figures of the machine's load start with: shown, never
/// compared.
const LOAD: &str = "load_";

/// Options of `heartwire bench report`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    /// The JSON-lines files that `bench run` appended to; repeatable. A figure in a later
    /// file replaces the same server's figure in an earlier one (a scenario run again)
    #[arg(long, value_name = "FILE", required = true)]
    figures: Vec<PathBuf>,
    /// Where to write the Markdown
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Where to write the SVG chart of the ratios
    #[arg(long, value_name = "FILE")]
    chart: PathBuf,
    /// Markdown appended as it is (the analysis of where bytes and cycles go)
    #[arg(long, value_name = "FILE")]
    notes: Option<PathBuf>,
}

/// Figures by name, then by server.
pub(crate) type Table = BTreeMap<String, BTreeMap<String, Figure>>;

/// What the names of the scale-out scenario's figures start with: they compare
/// heartwire's Redis topologies with each other, in a section of their own.
const SCALE_OUT: &str = "scaleout_";
/// What the names of the upgrade scenario's figures start with: a live upgrade beside a
/// restart of heartwire, in a section of their own.
const UPGRADE: &str = "upgrade_";

pub(crate) fn write(args: ReportArgs) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for path in &args.figures {
        all.extend(figures::read(path)?);
    }
    let mut servers: Vec<String> = Vec::new();
    let mut table = Table::new();
    let mut scale_out = Table::new();
    let mut upgrade = Table::new();
    for figure in all {
        if figure.figure.starts_with(UPGRADE) {
            upgrade
                .entry(figure.figure.clone())
                .or_default()
                .insert(figure.server.clone(), figure);
            continue;
        }
        if figure.figure.starts_with(SCALE_OUT) {
            scale_out
                .entry(figure.figure.clone())
                .or_default()
                .insert(figure.server.clone(), figure);
            continue;
        }
        if !servers.contains(&figure.server) {
            servers.push(figure.server.clone());
        }
        table
            .entry(figure.figure.clone())
            .or_default()
            .insert(figure.server.clone(), figure);
    }
    let peers: Vec<&String> = servers.iter().filter(|s| *s != HEARTWIRE).collect();
    let mut md = String::from("# Benchmark results\n\n");
    md += &machine();
    md += "\nEach scenario's figures come from one pass of `bench/run` over every server, on the \
           same machine the same day, so each ratio compares two servers measured side by side. \
           Ratios: peer ÷ heartwire for costs, heartwire ÷ peer for rates; **above 1 means \
           heartwire wins**. — means not measured (see *Missing*).\n\n";
    md += &figure_table(&table, &servers, &peers);
    let (targets_md, unmeasured_targets) = targets(&table);
    md += &targets_md;
    if !scale_out.is_empty() {
        md += &scale_out_section(&scale_out);
    }
    if !upgrade.is_empty() {
        md += &upgrade_section(&upgrade);
    }
    let mut every = table.clone();
    every.extend(scale_out);
    every.extend(upgrade);
    md += &missing(&every, &unmeasured_targets);
    md += &format!(
        "\n![ratios against heartwire]({})\n",
        args.chart
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    if let Some(notes) = &args.notes {
        md += "\n";
        md += &std::fs::read_to_string(notes)
            .with_context(|| format!("cannot read {}", notes.display()))?;
    }
    std::fs::write(&args.out, md)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let ratios: Vec<(String, Vec<(String, f64)>)> = table
        .iter()
        .map(|(name, row)| {
            let bars = peers
                .iter()
                .filter_map(|peer| Some(((*peer).clone(), ratio(row, peer)?)))
                .collect();
            (name.clone(), bars)
        })
        .filter(|(_, bars): &(String, Vec<_>)| !bars.is_empty())
        .collect();
    std::fs::write(&args.chart, chart::svg(&ratios))
        .with_context(|| format!("cannot write {}", args.chart.display()))?;
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_owned())
        })
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or_else(
            || "?".into(),
            |kib| format!("{:.0} GiB", kib as f64 / 1_048_576.0),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .unwrap_or_default();
    format!(
        "- Machine: {cpu}, {cores} cores, {memory}, Linux {}\n- Date: {}\n",
        kernel.trim(),
        date.trim()
    )
}

/// The peer's ratio against heartwire for one figure (above 1: heartwire wins).
fn ratio(row: &BTreeMap<String, Figure>, peer: &str) -> Option<f64> {
    let ours = row.get(HEARTWIRE)?;
    if ours.figure.starts_with(LOAD) {
        return None;
    }
    let theirs = row.get(peer)?.value?;
    let ours_value = ours.value?;
    let (top, bottom) = match ours.better {
        Better::Lower => (theirs, ours_value),
        Better::Higher => (ours_value, theirs),
    };
    (bottom > 0.0 && top > 0.0).then(|| top / bottom)
}

fn figure_table(table: &Table, servers: &[String], peers: &[&String]) -> String {
    let mut md = String::from("| figure | unit |");
    for server in servers {
        let _ = write!(md, " {server} |");
    }
    for peer in peers {
        let _ = write!(md, " ratio vs {peer} |");
    }
    md += "\n|---|---|";
    md += &"---:|".repeat(servers.len() + peers.len());
    md += "\n";
    for (name, row) in table {
        let unit = row.values().next().map_or("", |f| f.unit.as_str());
        let _ = write!(md, "| {name} | {unit} |");
        for server in servers {
            let cell = row
                .get(server)
                .and_then(|f| f.value)
                .map_or_else(|| "—".to_owned(), number);
            let _ = write!(md, " {cell} |");
        }
        for peer in peers {
            let cell = ratio(row, peer).map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"));
            let _ = write!(md, " {cell} |");
        }
        md += "\n";
    }
    md
}

fn number(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn value(table: &Table, figure: &str, server: &str) -> Option<f64> {
    table.get(figure)?.get(server)?.value
}

/// How many times `peer`'s cost is heartwire's, for a figure that is a cost.
fn times_cheaper(table: &Table, figure: &str, peer: &str) -> Option<f64> {
    let ours = value(table, figure, HEARTWIRE)?;
    let theirs = value(table, figure, peer)?;
    (ours > 0.0).then(|| theirs / ours)
}

/// heartwire's cost in each of `figures` (name, size) against `at_most`, and how many
/// times less than Node ws's it is against `times_less`: what was measured, and whether
/// every size met both (unknown when a figure is missing).
fn cost_at_sizes(
    table: &Table,
    figures: &[(&str, &str)],
    unit: &str,
    (at_most, times_less): (f64, f64),
) -> (String, Option<bool>) {
    let show = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), number);
    let mut measured = Vec::new();
    let mut met = Some(true);
    for &(figure, size) in figures {
        let cost = value(table, figure, HEARTWIRE);
        let vs_node = times_cheaper(table, figure, NODE_WS);
        measured.push(format!(
            "{} {unit} ({}×) at {size}",
            show(cost),
            show(vs_node)
        ));
        let this = cost
            .zip(vs_node)
            .map(|(c, r)| c <= at_most && r >= times_less);
        met = met.zip(this).map(|(all, this)| all && this);
    }
    (measured.join(", "), met)
}

/// The targets table, and the targets it could not judge for want of a figure.
fn targets(table: &Table) -> (String, Vec<String>) {
    let ours = |figure: &str| value(table, figure, HEARTWIRE);
    let verdict = |met: Option<bool>| match met {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    };
    let mut md = String::from("\n## Targets\n\n| target | measured | verdict |\n|---|---|---|\n");
    let mut unmeasured = Vec::new();
    let mut row = |target: &str, measured: String, met: Option<bool>| {
        let _ = writeln!(md, "| {target} | {measured} | {} |", verdict(met));
        if met.is_none() {
            unmeasured.push(target.to_owned());
        }
    };
    let show = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), number);

    // The brief's cost targets hold at every size they name, beside Node ws.
    let (measured, met) = cost_at_sizes(
        table,
        &[
            ("idle_user_bytes_per_conn_5000", "5,000"),
            ("idle_user_bytes_per_conn_19000", "19,000"),
        ],
        "B",
        (1024.0, 6.0),
    );
    row(
        "≤ 1 KiB user-space per idle connection at 5k and at 19k (opened 500 at a time), and ≥ 6× less than Node ws",
        measured,
        met,
    );
    let (measured, met) = cost_at_sizes(
        table,
        &[
            ("heartbeat_cpu_us_3000", "3,000"),
            ("heartbeat_cpu_us", "19,000"),
        ],
        "µs",
        (8.0, 3.0),
    );
    row(
        "≤ 8 µs CPU per heartbeat round trip at 3,000 and at 19,000 connections, and ≥ 3× less than Node ws",
        measured,
        met,
    );
    let delivery = times_cheaper(table, "fanout_cpu_us_per_delivery_10000", NODE_WS);
    row(
        "fan-out to 10k subscribers: ≥ 5× less server CPU per delivery than Node ws",
        format!("{}×", show(delivery)),
        delivery.map(|r| r >= 5.0),
    );
    for (figure, what) in [
        ("idle_user_bytes_per_conn_19000", "idle memory"),
        ("heartbeat_cpu_us_3000", "heartbeat CPU"),
    ] {
        let jwt = value(table, figure, HEARTWIRE_JWT)
            .zip(ours(figure))
            .map(|(jwt, anonymous)| jwt / anonymous);
        row(
            &format!("{what} with JWT-identified connections within ±20% of anonymous"),
            format!("{}× anonymous", show(jwt)),
            jwt.map(|r| (0.8..=1.2).contains(&r)),
        );
    }
    let echo_vs = |peer: &str| {
        ours("echo_messages_per_sec")
            .zip(value(table, "echo_messages_per_sec", peer))
            .map(|(a, b)| a / b)
    };
    let (echo_floor, echo_fast) = (echo_vs(FLOOR), echo_vs(FASTWEBSOCKETS));
    row(
        "echo ≥ 1.5× raw tokio-tungstenite, and ahead of fastwebsockets",
        format!("{}×, {}×", show(echo_floor), show(echo_fast)),
        echo_floor
            .zip(echo_fast)
            .map(|(floor, fast)| floor >= 1.5 && fast > 1.0),
    );
    let p99 = ours("detect_over_bound_p99_ms");
    let false_positives = ours("detect_false_positives");
    row(
        "detection p99 ≤ bound + 100 ms, zero false positives",
        format!("bound + {} ms, {} false", show(p99), show(false_positives)),
        p99.zip(false_positives)
            .map(|(p, f)| p <= 100.0 && f == 0.0),
    );
    let attempts = ours("storm_attempts_per_client");
    let overflows = ours("storm_listen_overflows");
    row(
        "storm ≤ 1.2 attempts per client, zero listen overflows",
        format!("{} attempts, {} overflows", show(attempts), show(overflows)),
        attempts.zip(overflows).map(|(a, o)| a <= 1.2 && o == 0.0),
    );
    (md, unmeasured)
}

/// The scale-out scenario: each Redis topology against one Redis, measured in one run.
fn scale_out_section(table: &Table) -> String {
    let ours = |figure: &str| value(table, figure, HEARTWIRE);
    let show = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), number);
    let mut md = String::from(
        "\n## Scale-out: three heartwire processes over Redis\n\n\
         `heartwire bench scale-out`, every topology in one run. The rate is the deliveries \
         per second of the last step (publish rate doubling) with 99% delivered and p99 \
         publish→receive ≤ 100 ms; on 2 cores every process shares the same CPUs, so the \
         ratio to one Redis is the figure.\n\n\
         | topology | deliveries/s | ratio vs one Redis | p99 ms | publish→ack p99 ms |\n\
         |---|---:|---:|---:|---:|\n",
    );
    let single = ours("scaleout_single_deliveries_per_sec");
    for (label, name) in [
        ("single", "one Redis"),
        ("cluster3", "Redis Cluster, 3 masters + 3 replicas"),
        ("sharded3", "3 Redis servers, consistent hash"),
        ("cluster3_wait1", "Redis Cluster, --redis-wait-replicas 1"),
    ] {
        let rate = ours(&format!("scaleout_{label}_deliveries_per_sec"));
        let ratio = rate.zip(single).map(|(rate, single)| rate / single);
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} |",
            show(rate),
            ratio.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}")),
            show(ours(&format!("scaleout_{label}_p99_ms"))),
            show(ours(&format!("scaleout_{label}_ack_p99_ms"))),
        );
    }
    let _ = writeln!(
        md,
        "\nA cluster master killed (SIGKILL) under load: every subscriber receives again on \
         every channel of its shard after **{} s**.",
        show(ours("scaleout_cluster3_recovery_secs"))
    );
    md
}

/// The upgrade scenario: the same load through a live upgrade and through a restart,
/// one column per pass (`upgrade_{idle}_{live,restart}_…`), the most idle first.
fn upgrade_section(table: &Table) -> String {
    let mut passes: Vec<(u64, String)> = Vec::new();
    for name in table.keys() {
        let Some(rest) = name.strip_prefix(UPGRADE) else {
            continue;
        };
        let mut parts = rest.splitn(3, '_');
        if let (Some(idle), Some(swap)) = (parts.next(), parts.next())
            && let Ok(idle) = idle.parse::<u64>()
            && !passes.iter().any(|(i, s)| *i == idle && s == swap)
        {
            passes.push((idle, swap.to_owned()));
        }
    }
    passes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    // Counts are whole; durations and the load keep their decimals.
    let show = |(idle, swap): &(u64, String), figure: &str| {
        let shown = value(
            table,
            &format!("{UPGRADE}{idle}_{swap}_{figure}"),
            HEARTWIRE,
        );
        let whole = !figure.ends_with("_ms") && figure != "load";
        match shown {
            Some(count) if whole => format!("{count:.0}"),
            Some(other) => number(other),
            None => "—".to_owned(),
        }
    };
    let mut md = String::from(
        "\n## Live upgrade beside a restart\n\n\
         `heartwire bench upgrade` (`bench/run --only upgrade`): one release `heartwire serve \
         --upgrade-socket` on Redis with idle connections and busy clients (publishers at a \
         fixed rate, subscribers), then either a second process of the same binary takes over \
         (`--take-over`, *live*) or the server is stopped with SIGTERM and started again \
         (*restart*: close 1012 with a spread reconnect hint). bench/NOTES.md says how to read \
         each line.\n\n| |",
    );
    for pass in &passes {
        let _ = write!(md, " {}, {} idle |", pass.1, pass.0);
    }
    md += "\n|---|";
    md += &"---:|".repeat(passes.len());
    md += "\n";
    for (figure, name) in [
        ("idle_connected", "idle connections open"),
        ("busy_clients", "busy clients"),
        ("closes_seen", "closes seen by clients"),
        ("messages_received", "messages received"),
        ("messages_lost", "messages lost"),
        ("messages_repeated", "messages repeated"),
        ("gaps_told", "gaps the server told of"),
        ("p99_steady_ms", "p99 publish→receive, steady (ms)"),
        (
            "p99_swap_ms",
            "p99 publish→receive, messages on their way during the swap (ms)",
        ),
        ("max_swap_ms", "slowest of those (ms)"),
        ("accepting_ms", "swap start → new process accepting (ms)"),
        ("old_gone_ms", "swap start → old process gone (ms)"),
        (
            "clients_back_ms",
            "swap start → every busy client open again (ms)",
        ),
        (
            "load",
            "the machine's load (1-minute average) after the pass",
        ),
    ] {
        md += &format!("| {name} |");
        for pass in &passes {
            let _ = write!(md, " {} |", show(pass, figure));
        }
        md += "\n";
    }
    md
}

/// What has no figure: those recorded as not measured, and the targets whose figures
/// no scenario of this run gave.
fn missing(table: &Table, unmeasured_targets: &[String]) -> String {
    let mut md = String::from("\n## Missing\n\n");
    let mut any = false;
    for target in unmeasured_targets {
        any = true;
        let _ = writeln!(
            md,
            "- target \"{target}\": a figure it needs was not measured in this run"
        );
    }
    for row in table.values() {
        for figure in row.values().filter(|f| f.value.is_none()) {
            any = true;
            let why = figure.note.as_deref().unwrap_or("not measured");
            let _ = writeln!(md, "- {} for {}: {why}", figure.figure, figure.server);
        }
    }
    if !any {
        md += "Nothing: every scenario gave its figures.\n";
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[(&str, &str, f64)]) -> Table {
        let mut table = Table::new();
        for &(server, figure, value) in rows {
            table.entry(figure.to_owned()).or_default().insert(
                server.to_owned(),
                Figure {
                    server: server.to_owned(),
                    figure: figure.to_owned(),
                    value: Some(value),
                    unit: String::new(),
                    better: Better::Lower,
                    note: None,
                },
            );
        }
        table
    }

    /// The verdict of the targets row that starts with `target`.
    fn verdict<'a>(md: &'a str, target: &str) -> &'a str {
        let line = md
            .lines()
            .find(|line| line.starts_with(&format!("| {target}")))
            .unwrap_or_else(|| panic!("no row {target} in {md}"));
        line.rsplit('|').nth(1).unwrap().trim()
    }

    #[test]
    fn a_target_is_met_only_at_every_size_and_beside_every_peer_it_names() {
        let idle = "≤ 1 KiB user-space per idle connection";
        let echo = "echo ≥ 1.5×";
        let mut rows = vec![
            (HEARTWIRE, "idle_user_bytes_per_conn_5000", 1000.0),
            (NODE_WS, "idle_user_bytes_per_conn_5000", 7000.0),
            (HEARTWIRE, "idle_user_bytes_per_conn_19000", 1000.0),
            (NODE_WS, "idle_user_bytes_per_conn_19000", 7000.0),
            (HEARTWIRE, "echo_messages_per_sec", 160.0),
            (FLOOR, "echo_messages_per_sec", 100.0),
            (FASTWEBSOCKETS, "echo_messages_per_sec", 150.0),
        ];
        let (md, _) = targets(&table(&rows));
        assert_eq!(verdict(&md, idle), "**met**", "{md}");
        assert_eq!(verdict(&md, echo), "**met**", "{md}");

        // Over the bound at 5k only; behind fastwebsockets only.
        rows[0].2 = 1100.0;
        rows[6].2 = 170.0;
        let (md, _) = targets(&table(&rows));
        assert_eq!(verdict(&md, idle), "**not met**", "{md}");
        assert_eq!(verdict(&md, echo), "**not met**", "{md}");

        // Without fastwebsockets the echo target cannot be judged.
        rows.pop();
        let (md, unmeasured) = targets(&table(&rows));
        assert_eq!(verdict(&md, echo), "not measured", "{md}");
        assert!(unmeasured.iter().any(|target| target.starts_with(echo)));
    }

    #[test]
    fn a_target_without_its_figure_is_listed_as_missing() {
        let (_, unmeasured) = targets(&Table::new());
        assert!(!unmeasured.is_empty());
        let md = missing(&Table::new(), &unmeasured);
        assert!(!md.contains("Nothing"), "{md}");
        for target in &unmeasured {
            assert!(md.contains(target.as_str()), "{target} not in {md}");
        }
        assert!(missing(&Table::new(), &[]).contains("Nothing"));
    }
}
