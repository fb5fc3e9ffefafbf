//! An SVG bar chart of the ratios against heartwire, on a log scale: one group per
//! figure, one bar per peer, the line at 1 where heartwire and the peer are even.

use std::fmt::Write as _;

const ROW: f64 = 14.0;
const GROUP_GAP: f64 = 10.0;
const LABEL_WIDTH: f64 = 330.0;
const PLOT_WIDTH: f64 = 420.0;
/// The scale runs from 1/SPAN to SPAN.
const SPAN: f64 = 1000.0;
const COLOURS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2",
];

/// `groups`: figure name and (peer, ratio) bars.
pub(crate) fn svg(groups: &[(String, Vec<(String, f64)>)]) -> String {
    let mut peers: Vec<&str> = Vec::new();
    for (_, bars) in groups {
        for (peer, _) in bars {
            if !peers.contains(&peer.as_str()) {
                peers.push(peer);
            }
        }
    }
    let rows: usize = groups.iter().map(|(_, bars)| bars.len()).sum();
    let height =
        60.0 + rows as f64 * ROW + groups.len() as f64 * GROUP_GAP + 20.0 * peers.len() as f64;
    let width = LABEL_WIDTH + PLOT_WIDTH + 40.0;
    let x = |ratio: f64| {
        let clamped = ratio.clamp(1.0 / SPAN, SPAN);
        LABEL_WIDTH + (clamped.log10() / SPAN.log10() + 1.0) / 2.0 * PLOT_WIDTH
    };
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="18" font-size="13">Ratio against heartwire (log scale; right of the line: heartwire wins)</text>
"#
    );
    let mut y = 36.0;
    for (figure, bars) in groups {
        let _ = writeln!(
            svg,
            r#"<text x="10" y="{}">{figure}</text>"#,
            y + ROW * 0.75
        );
        for (peer, ratio) in bars {
            let colour = COLOURS[peers.iter().position(|p| p == peer).unwrap_or(0) % COLOURS.len()];
            let (from, to) = (x(1.0).min(x(*ratio)), x(1.0).max(x(*ratio)));
            let _ = writeln!(
                svg,
                r#"<rect x="{from:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{peer}: {ratio:.2}</title></rect>"#,
                y + 1.0,
                (to - from).max(1.0),
                ROW - 2.0
            );
            y += ROW;
        }
        y += GROUP_GAP;
    }
    for tick in [0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0] {
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="30" y2="{y:.1}" stroke="{1}"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{tick}</text>"##,
            x(tick),
            if tick == 1.0 { "#000" } else { "#ddd" },
            y + 12.0
        );
    }
    y += 30.0;
    for (index, peer) in peers.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<rect x="10" y="{:.1}" width="12" height="10" fill="{}"/><text x="28" y="{:.1}">{peer}</text>"#,
            y,
            COLOURS[index % COLOURS.len()],
            y + 9.0
        );
        y += 20.0;
    }
    svg += "</svg>\n";
    svg
}
