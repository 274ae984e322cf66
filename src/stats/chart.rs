//! Server-rendered SVG charts for the console (bars and lines), pure: data in, markup out. No
//! script and no external asset, so the console's CSP holds; every text is escaped here because
//! the template prints the result unescaped.

use std::fmt::Write;

const W: f64 = 640.0;
const H: f64 = 240.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 36.0;
const COLORS: [&str; 4] = ["#c8102e", "#2f6fb0", "#e39b17", "#4a9a5b"];
/// At most this many x labels are written; the others are skipped evenly.
const MAX_LABELS: usize = 12;

/// How values read on the y axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// 0..1 shown as 0–100 %.
    Rate,
    /// Counts from 0 (or the smallest negative) to a round maximum.
    Count,
}

pub struct Series<'a> {
    pub name: &'a str,
    /// One value per label; None = no data (no bar, a gap in the line).
    pub values: Vec<Option<f64>>,
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The y axis (min, max, step between grid lines): rates 0..1 in quarters; counts in whole
/// steps of 1, 2 or 5 × 10ⁿ, about four of them, from 0 (or below, for negative values).
fn range(scale: Scale, series: &[Series]) -> (f64, f64, f64) {
    if scale == Scale::Rate {
        return (0.0, 1.0, 0.25);
    }
    let vals = series.iter().flat_map(|s| s.values.iter().flatten());
    let (lo, hi) = vals.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let rough = (hi.max(-lo) / 4.0).max(1.0);
    let p = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= rough)
        .unwrap_or(10.0 * p);
    let hi = ((hi / step).ceil() * step).max(step);
    let lo = (lo / step).floor() * step;
    (lo, hi, step)
}

fn tick(scale: Scale, v: f64) -> String {
    match scale {
        Scale::Rate => format!("{:.0}%", v * 100.0),
        Scale::Count => format!("{v:.0}"),
    }
}

struct Frame {
    lo: f64,
    hi: f64,
    n: usize,
}

impl Frame {
    fn y(&self, v: f64) -> f64 {
        TOP + (H - TOP - BOTTOM) * (self.hi - v) / (self.hi - self.lo)
    }
    fn slot(&self) -> f64 {
        (W - LEFT - RIGHT) / self.n.max(1) as f64
    }
    fn x(&self, i: usize) -> f64 {
        LEFT + self.slot() * (i as f64 + 0.5)
    }
}

/// The axes, grid, x labels and legend; returns the frame to draw in.
fn open(
    out: &mut String,
    title: &str,
    labels: &[String],
    series: &[Series],
    scale: Scale,
) -> Frame {
    let (lo, hi, step) = range(scale, series);
    let f = Frame {
        lo,
        hi,
        n: labels.len(),
    };
    let _ = write!(
        out,
        r#"<svg class="chart" width="100%" viewBox="0 0 {W} {H}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        t = esc(title)
    );
    let lines = ((hi - lo) / step).round() as i64;
    for k in 0..=lines {
        let v = lo + step * k as f64;
        let y = f.y(v);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{tx}" y="{ty:.1}" font-size="10" text-anchor="end" fill="#666">{l}</text>"##,
            x2 = W - RIGHT,
            tx = LEFT - 4.0,
            ty = y + 3.0,
            l = tick(scale, v)
        );
    }
    let every = labels.len().div_ceil(MAX_LABELS).max(1);
    for (i, l) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let _ = write!(
            out,
            r##"<text x="{x:.1}" y="{y}" font-size="10" text-anchor="middle" fill="#444">{l}</text>"##,
            x = f.x(i),
            y = H - BOTTOM + 14.0,
            l = esc(l)
        );
    }
    for (k, s) in series.iter().enumerate() {
        let x = LEFT + 110.0 * k as f64;
        let _ = write!(
            out,
            r##"<rect x="{x}" y="6" width="10" height="10" fill="{c}"/><text x="{tx}" y="15" font-size="11" fill="#333">{n}</text>"##,
            c = COLORS[k % COLORS.len()],
            tx = x + 14.0,
            n = esc(s.name)
        );
    }
    f
}

/// Grouped bars: one group per label, one bar per series.
pub fn bars(title: &str, labels: &[String], series: &[Series], scale: Scale) -> String {
    let mut out = String::new();
    let f = open(&mut out, title, labels, series, scale);
    let width = f.slot() * 0.8 / series.len().max(1) as f64;
    for (k, s) in series.iter().enumerate() {
        for (i, v) in s.values.iter().enumerate().take(f.n) {
            let Some(v) = v else { continue };
            let (y0, y1) = (f.y(0.0), f.y(*v));
            let x = f.x(i) - f.slot() * 0.4 + width * k as f64;
            let _ = write!(
                out,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}" fill="{c}"><title>{n} {l}: {t}</title></rect>"#,
                y = y0.min(y1),
                h = (y0 - y1).abs(),
                c = COLORS[k % COLORS.len()],
                n = esc(s.name),
                l = esc(&labels[i]),
                t = tick_exact(scale, *v)
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// Lines with a dot per value; a None breaks the line.
pub fn lines(title: &str, labels: &[String], series: &[Series], scale: Scale) -> String {
    let mut out = String::new();
    let f = open(&mut out, title, labels, series, scale);
    for (k, s) in series.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let mut path = String::new();
        let mut pen_down = false;
        for (i, v) in s.values.iter().enumerate().take(f.n) {
            match v {
                Some(v) => {
                    let _ = write!(
                        path,
                        "{}{:.1},{:.1} ",
                        if pen_down { "L" } else { "M" },
                        f.x(i),
                        f.y(*v)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !path.is_empty() {
            let _ = write!(
                out,
                r#"<path d="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
                path.trim_end()
            );
        }
        if f.n <= 62 {
            for (i, v) in s.values.iter().enumerate().take(f.n) {
                if let Some(v) = v {
                    let _ = write!(
                        out,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{c}"><title>{} {}: {}</title></circle>"#,
                        f.x(i),
                        f.y(*v),
                        esc(s.name),
                        esc(&labels[i]),
                        tick_exact(scale, *v)
                    );
                }
            }
        }
    }
    out.push_str("</svg>");
    out
}

fn tick_exact(scale: Scale, v: f64) -> String {
    match scale {
        Scale::Rate => format!("{:.1}%", v * 100.0),
        Scale::Count => format!("{v}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn count_axes_step_in_round_whole_numbers() {
        let s = |v: &[f64]| {
            vec![Series {
                name: "x",
                values: v.iter().copied().map(Some).collect(),
            }]
        };
        type Axis = (f64, f64, f64);
        let cases: &[(&[f64], Axis)] = &[
            (&[], (0.0, 1.0, 1.0)),
            (&[0.0], (0.0, 1.0, 1.0)),
            (&[3.0], (0.0, 3.0, 1.0)),
            (&[7.0, 12.0], (0.0, 15.0, 5.0)),
            (&[50.0], (0.0, 60.0, 20.0)),
            (&[-3.0, 8.0], (-4.0, 8.0, 2.0)),
        ];
        for (v, want) in cases {
            assert_eq!(range(Scale::Count, &s(v)), *want, "{v:?}");
        }
        assert_eq!(range(Scale::Rate, &s(&[3.0])), (0.0, 1.0, 0.25));
        // Whole-number ticks only: a maximum of 1 is not labelled 0, 0, 1, 1, 1.
        let svg = bars("t", &labels(&["a"]), &s(&[1.0]), Scale::Count);
        assert_eq!(svg.matches("text-anchor=\"end\"").count(), 2, "{svg}");
    }

    #[test]
    fn bars_scale_to_the_axis_and_skip_missing_values() {
        let svg = bars(
            "收缴率",
            &labels(&["一支部", "二支部"]),
            &[Series {
                name: "收缴率",
                values: vec![Some(1.0), None],
            }],
            Scale::Rate,
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(
            svg.matches("<rect x=").count(),
            1 + 1,
            "one legend swatch, one bar"
        );
        // A full bar spans the plot: from y(1) = TOP to y(0) = H - BOTTOM.
        assert!(svg.contains(&format!("y=\"{TOP:.1}\" width=")), "{svg}");
        assert!(svg.contains(&format!("height=\"{:.1}\"", H - TOP - BOTTOM)));
        assert!(svg.contains("收缴率 一支部: 100.0%"));
        assert!(svg.contains(">100%</text>"));
    }

    #[test]
    fn text_is_escaped() {
        let svg = lines(
            "<script>",
            &labels(&["a&b", "c"]),
            &[Series {
                name: "\"x\"",
                values: vec![Some(1.0), Some(2.0)],
            }],
            Scale::Count,
        );
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("a&amp;b"));
        assert!(svg.contains("&quot;x&quot;"));
    }

    #[test]
    fn a_gap_breaks_the_line_and_long_axes_thin_their_labels() {
        let svg = lines(
            "t",
            &labels(&["1", "2", "3", "4"]),
            &[Series {
                name: "s",
                values: vec![Some(1.0), Some(2.0), None, Some(1.0)],
            }],
            Scale::Count,
        );
        let d = svg.split("d=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(d.matches('L').count(), 1, "{d}");
        let many: Vec<String> = (1..=30).map(|d| format!("d{d}")).collect();
        let svg = bars(
            "t",
            &many,
            &[Series {
                name: "s",
                values: vec![Some(1.0); 30],
            }],
            Scale::Count,
        );
        assert!(svg.contains(">d1<") && svg.contains(">d4<") && !svg.contains(">d2<"));
    }
}
