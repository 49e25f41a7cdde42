//! Stacked bar charts as inline SVG, written here (a few dozen lines do not need a crate).
//! No script and no inline style: colours come from classes in `console.css` (`s0`…`s7`,
//! each at least 3:1 against white, segments parted by white lines). Each chart is
//! `role="img"` with a `<title>` and `<desc>` it is labelled by; each bar segment carries its
//! own `<title>` (the figures, shown on hover); the page puts the same numbers in a table.

use super::html::Html;

/// Series drawn with a colour of their own; more are folded into the last by the caller.
pub(super) const COLOURS: usize = 8;

/// One series: its name and a value per bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Series {
    pub(super) label: String,
    pub(super) values: Vec<i64>,
}

/// A chart: its id (for the title's and description's ids), what it shows, the buckets'
/// labels along the bottom, and the series stacked in each bucket (first at the bottom).
#[derive(Debug)]
pub(super) struct Bars<'a> {
    pub(super) id: &'static str,
    pub(super) title: &'a str,
    pub(super) desc: &'a str,
    pub(super) labels: &'a [String],
    pub(super) series: &'a [Series],
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 44.0;
/// Labels along the bottom, at most.
const X_LABELS: usize = 8;

/// The top of the value axis and its step: a step of 1, 2 or 5 times a power of ten, with
/// at most five steps up to a top at or above `max`.
pub(super) fn scale(max: i64) -> (i64, i64) {
    let max = max.max(1);
    let mut power = 1_i64;
    loop {
        for step in [power, power.saturating_mul(2), power.saturating_mul(5)] {
            let steps = (max + step - 1) / step;
            if steps <= 5 {
                return (steps * step, step);
            }
        }
        power = power.saturating_mul(10);
    }
}

fn num(h: &mut Html, value: f64) {
    h.text(&format!("{value:.1}"));
}

/// Writes the chart.
pub(super) fn stacked_bars(h: &mut Html, chart: &Bars<'_>) {
    let buckets = chart.labels.len().max(1);
    let totals: Vec<i64> = (0..buckets)
        .map(|i| {
            chart
                .series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let (top, step) = scale(totals.iter().copied().max().unwrap_or(0));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let y = |v: i64| TOP + plot_h - plot_h * (v as f64) / (top as f64);
    let slot = plot_w / buckets as f64;
    let bar_w = (slot * 0.8).max(1.0);

    h.raw("<svg class=\"chart\" role=\"img\" viewBox=\"0 0 720 260\" aria-labelledby=\"")
        .raw(chart.id)
        .raw("-title ")
        .raw(chart.id)
        .raw("-desc\" id=\"")
        .raw(chart.id)
        .raw("\">\n<title id=\"")
        .raw(chart.id)
        .raw("-title\">")
        .text(chart.title)
        .raw("</title>\n<desc id=\"")
        .raw(chart.id)
        .raw("-desc\">")
        .text(chart.desc)
        .raw("</desc>\n");
    // The value axis: grid lines and their values.
    let mut v = 0;
    while v <= top {
        h.raw("<line class=\"grid\" x1=\"");
        num(h, LEFT);
        h.raw("\" x2=\"");
        num(h, WIDTH - RIGHT);
        h.raw("\" y1=\"");
        num(h, y(v));
        h.raw("\" y2=\"");
        num(h, y(v));
        h.raw("\"/><text class=\"tick\" text-anchor=\"end\" x=\"");
        num(h, LEFT - 6.0);
        h.raw("\" y=\"");
        num(h, y(v) + 4.0);
        h.raw("\">").text(&v.to_string()).raw("</text>\n");
        v += step;
    }
    // The bars, bottom up.
    for (i, label) in chart.labels.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut base = 0_i64;
        for (k, series) in chart.series.iter().enumerate() {
            let value = series.values.get(i).copied().unwrap_or(0);
            if value <= 0 {
                continue;
            }
            let (y1, y0) = (y(base + value), y(base));
            h.raw("<rect class=\"s")
                .text(&(k % COLOURS).to_string())
                .raw("\" x=\"");
            num(h, x);
            h.raw("\" y=\"");
            num(h, y1);
            h.raw("\" width=\"");
            num(h, bar_w);
            h.raw("\" height=\"");
            num(h, (y0 - y1).max(0.5));
            h.raw("\"><title>")
                .text(label)
                .raw(", ")
                .text(&series.label)
                .raw(": ")
                .text(&value.to_string())
                .raw("</title></rect>\n");
            base += value;
        }
    }
    // The bucket axis and some of its labels.
    h.raw("<line class=\"axis\" x1=\"");
    num(h, LEFT);
    h.raw("\" x2=\"");
    num(h, WIDTH - RIGHT);
    h.raw("\" y1=\"");
    num(h, y(0));
    h.raw("\" y2=\"");
    num(h, y(0));
    h.raw("\"/>\n");
    let every = buckets.div_ceil(X_LABELS).max(1);
    for (i, label) in chart.labels.iter().enumerate().step_by(every) {
        h.raw("<text class=\"tick\" text-anchor=\"middle\" x=\"");
        num(h, LEFT + slot * (i as f64 + 0.5));
        h.raw("\" y=\"");
        num(h, HEIGHT - BOTTOM + 18.0);
        h.raw("\">").text(label).raw("</text>\n");
    }
    h.raw("</svg>\n");
    // The key, in the order the series are stacked (bottom first).
    if !chart.series.is_empty() {
        h.raw("<ul class=\"legend\" aria-hidden=\"true\">");
        for (k, series) in chart.series.iter().enumerate() {
            h.raw("<li><svg class=\"swatch\" viewBox=\"0 0 10 10\" focusable=\"false\"><rect class=\"s")
                .text(&(k % COLOURS).to_string())
                .raw("\" width=\"10\" height=\"10\"/></svg>")
                .text(&series.label)
                .raw("</li>");
        }
        h.raw("</ul>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_tops_the_largest_bar_in_at_most_five_round_steps() {
        assert_eq!(scale(0), (1, 1));
        assert_eq!(scale(1), (1, 1));
        assert_eq!(scale(4), (4, 1));
        assert_eq!(scale(7), (8, 2));
        assert_eq!(scale(23), (25, 5));
        assert_eq!(scale(101), (150, 50));
        assert_eq!(scale(999_999), (1_000_000, 200_000));
    }

    #[test]
    fn a_chart_is_an_image_with_a_title_and_a_segment_per_nonzero_value() {
        let labels = vec!["Mon".to_owned(), "Tue".to_owned()];
        let series = vec![
            Series {
                label: "TREAT".into(),
                values: vec![3, 0],
            },
            Series {
                label: "<ETREAT>".into(),
                values: vec![1, 2],
            },
        ];
        let mut h = Html::default();
        stacked_bars(
            &mut h,
            &Bars {
                id: "c",
                title: "Accesses",
                desc: "per day",
                labels: &labels,
                series: &series,
            },
        );
        let svg = h.finish();
        assert!(svg.contains("role=\"img\""), "{svg}");
        assert!(svg.contains("aria-labelledby=\"c-title c-desc\""), "{svg}");
        assert!(
            svg.contains("<title id=\"c-title\">Accesses</title>"),
            "{svg}"
        );
        assert_eq!(
            svg.matches("<rect class=\"s").count(),
            3 + 2,
            "three bars and two swatches"
        );
        assert!(
            svg.contains("<title>Tue, &lt;ETREAT&gt;: 2</title>"),
            "{svg}"
        );
        assert!(!svg.contains("style="), "no inline style");
    }
}
