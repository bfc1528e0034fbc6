//! Line charts as SVG, for the sweep's figures: a row of panels, one per measure, each a
//! polyline over the same x values. A few dozen lines of SVG text; a plotting crate would
//! bring a font rasteriser and an image stack for three polylines.

use std::fmt::Write as _;

/// One panel: a title and a y value per x (`None`: no figure there).
#[derive(Clone, Debug)]
pub struct Panel {
    /// What it shows, with its unit.
    pub title: String,
    /// One value per x.
    pub values: Vec<Option<f64>>,
}

const W: f64 = 300.0;
const H: f64 = 220.0;
const PAD: f64 = 44.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG of `panels` side by side over `xs` (labelled `x_label`; logarithmic if `log_x`).
#[must_use]
pub fn svg(title: &str, x_label: &str, xs: &[f64], log_x: bool, panels: &[Panel]) -> String {
    let width = W * panels.len() as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{}" font-family="sans-serif" font-size="11">"#,
        H + 30.0
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="8" y="16" font-size="13">{}</text>"#,
        esc(title)
    );
    let fx = |x: f64| if log_x { x.max(1e-9).ln() } else { x };
    let (x0, x1) = xs
        .iter()
        .map(|x| fx(*x))
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let span_x = if x1 > x0 { x1 - x0 } else { 1.0 };
    for (k, p) in panels.iter().enumerate() {
        let ox = W * k as f64;
        let top = 30.0;
        let (left, right, bottom) = (ox + PAD, ox + W - 12.0, top + H - PAD);
        let ymax = p
            .values
            .iter()
            .flatten()
            .fold(0.0_f64, |a, v| a.max(*v))
            .max(1e-9)
            * 1.1;
        let px = |x: f64| left + (fx(x) - x0) / span_x * (right - left);
        let py = |y: f64| bottom - y / ymax * (bottom - top - 20.0);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="12">{}</text>"#,
            left,
            top + 12.0,
            esc(&p.title)
        );
        let _ = writeln!(
            s,
            r#"<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/><line x1="{left}" y1="{}" x2="{left}" y2="{bottom}" stroke="black"/>"#,
            top + 20.0
        );
        for frac in [0.0, 0.5, 1.0] {
            let v = ymax / 1.1 * frac;
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                left - 4.0,
                py(v) + 4.0,
                short(v)
            );
        }
        for x in xs {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                px(*x),
                bottom + 14.0,
                short(*x)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            (left + right) / 2.0,
            bottom + 30.0,
            esc(x_label)
        );
        let points: Vec<String> = xs
            .iter()
            .zip(&p.values)
            .filter_map(|(x, v)| v.map(|v| format!("{:.1},{:.1}", px(*x), py(v))))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="steelblue" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        for pt in &points {
            let (cx, cy) = pt.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(s, r#"<circle cx="{cx}" cy="{cy}" r="3" fill="steelblue"/>"#);
        }
    }
    s.push_str("</svg>\n");
    s
}

fn short(v: f64) -> String {
    if v >= 1000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{}k", v / 1000.0)
    } else if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_a_panel_and_a_point_per_figure() {
        let s = svg(
            "t",
            "nodes",
            &[16.0, 64.0, 256.0],
            true,
            &[
                Panel {
                    title: "a <ms>".into(),
                    values: vec![Some(1.0), None, Some(3.0)],
                },
                Panel {
                    title: "b".into(),
                    values: vec![Some(0.0), Some(0.0), Some(0.0)],
                },
            ],
        );
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert_eq!(s.matches("<polyline").count(), 2);
        assert_eq!(s.matches("<circle").count(), 5);
        assert!(s.contains("a &lt;ms&gt;"));
        assert!(!s.contains("NaN"));
    }
}
