//! The chart of BENCHMARKS.md: one horizontal bar per targeted ratio, drawn from 1.0 to the
//! measured median, with the target as a red tick; green bars meet their target, orange
//! ones miss it. Plain SVG written by hand: no dependency, diff-friendly output.

use std::fmt::Write as _;

use super::report::{Ratio, Report};

const WIDTH: f64 = 960.0;
const LABEL_W: f64 = 420.0;
const RIGHT_PAD: f64 = 70.0;
const ROW_H: f64 = 20.0;
const TOP: f64 = 50.0;
/// The axis never zooms out beyond this, so one wild stall ratio cannot flatten the rest.
const AXIS_CLAMP: (f64, f64) = (0.5, 2.0);

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The x range: 1.0, every value and every target, padded, rounded to 0.05, clamped.
fn axis(ratios: &[&Ratio]) -> (f64, f64) {
    let mut lo: f64 = 0.95;
    let mut hi: f64 = 1.05;
    for r in ratios {
        lo = lo.min(r.ratio.median);
        hi = hi.max(r.ratio.median);
        if let Some(t) = r.target {
            lo = lo.min(t.limit());
            hi = hi.max(t.limit());
        }
    }
    let lo = ((lo - 0.02) * 20.0).floor() / 20.0;
    let hi = ((hi + 0.02) * 20.0).ceil() / 20.0;
    (lo.max(AXIS_CLAMP.0), hi.min(AXIS_CLAMP.1))
}

pub fn render(report: &Report) -> String {
    let ratios: Vec<&Ratio> = report
        .ratios
        .iter()
        .filter(|r| r.target.is_some())
        .collect();
    let (lo, hi) = axis(&ratios);
    let plot_w = WIDTH - LABEL_W - RIGHT_PAD;
    let x = |v: f64| LABEL_W + (v.clamp(lo, hi) - lo) / (hi - lo) * plot_w;
    let height = TOP + ROW_H * ratios.len() as f64 + 40.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="10" y="20" font-size="15" font-weight="bold">blk-interposer bench, kernel {} ({} rounds{}): ratio medians, target ticks in red</text>"#,
        escape(&report.release),
        report.rounds,
        if report.quick { ", quick" } else { "" }
    );
    // grid every 0.05 (0.1 when wide), labelled
    let step = if hi - lo > 0.6 { 0.1 } else { 0.05 };
    let mut t = (lo / step).ceil() * step;
    let bottom = TOP + ROW_H * ratios.len() as f64;
    while t <= hi + 1e-9 {
        let _ = writeln!(
            o,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#ddd"/><text x="{0:.1}" y="{3}" text-anchor="middle" fill="#555">{4:.2}</text>"##,
            x(t),
            TOP - 8.0,
            bottom,
            bottom + 16.0,
            t
        );
        t += step;
    }
    for (i, r) in ratios.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        let v = r.ratio.median;
        let (a, b) = if v >= 1.0 {
            (x(1.0), x(v))
        } else {
            (x(v), x(1.0))
        };
        let colour = match r.verdict() {
            Some(true) => "#4a9a4a",
            _ => "#e08a2c",
        };
        let label = format!(
            "{} {} {} {}",
            r.name(),
            r.metric.label(),
            r.devset,
            r.workload
        );
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LABEL_W - 8.0,
            y + 14.0,
            escape(&label)
        );
        let _ = writeln!(
            o,
            r#"<rect x="{a:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"/>"#,
            y + 3.0,
            (b - a).max(1.0),
            ROW_H - 6.0
        );
        if let Some(t) = r.target {
            let _ = writeln!(
                o,
                r#"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="red" stroke-width="2"/>"#,
                x(t.limit()),
                y + 1.0,
                y + ROW_H - 1.0
            );
        }
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}">{v:.3}</text>"#,
            WIDTH - RIGHT_PAD + 6.0,
            y + 14.0
        );
    }
    let _ = writeln!(
        o,
        r#"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="black"/>"#,
        x(1.0),
        TOP - 8.0,
        bottom
    );
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::super::report::{Metric, Stat, Target};
    use super::super::run::Results;
    use super::*;

    fn ratio(v: f64, target: Option<Target>) -> Ratio {
        Ratio {
            num: "interposed".into(),
            den: "dm-linear".into(),
            devset: "null_blk".into(),
            workload: "randread".into(),
            metric: Metric::InsnPerIo,
            ratio: Stat::of(&[v]).unwrap(),
            target,
        }
    }

    #[test]
    fn renders_one_bar_per_targeted_ratio() {
        let mut rep = super::super::report::build("6.12", "6.12.x", 3, true, Results::default());
        rep.ratios = vec![
            ratio(1.01, Some(Target::AtMost(1.02))),
            ratio(1.10, Some(Target::AtMost(1.02))),
            ratio(1.50, None),
        ];
        let svg = render(&rep);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect ").count(), 1 + 2, "background + 2 bars");
        assert_eq!(svg.matches("stroke=\"red\"").count(), 2);
        assert!(svg.contains("#4a9a4a") && svg.contains("#e08a2c"));
        assert!(svg.contains(">1.100<"));
        assert!(svg.contains("interposed/dm-linear insn/IO null_blk randread"));
    }

    #[test]
    fn axis_covers_values_and_targets_but_is_clamped() {
        let a = ratio(0.97, Some(Target::AtLeast(0.98)));
        let b = ratio(1.01, Some(Target::AtMost(1.2)));
        assert_eq!(axis(&[&a, &b]), (0.9, 1.25));
        let wild = ratio(9.0, Some(Target::AtMost(1.2)));
        assert_eq!(axis(&[&wild]).1, 2.0);
    }
}
