//! SVG charts with `plotters`: line charts, heat maps, and the training curve of a run.
//!
//! Only plotters' SVG backend is built (no bitmap backend, no font crate): text becomes SVG
//! `<text>` elements that the viewer renders with its own fonts, and plotters lays labels out
//! with its built-in size estimate, so nothing needs fontconfig or freetype. Every chart is a
//! standalone `<svg>` document a browser or image viewer shows as is. Rendering and writing
//! fail with an error that names the file, never a panic.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::TrainError;

/// Size of a line chart; the right `LEGEND` pixels hold the legend.
const W: u32 = 720;
const H: u32 = 420;
const LEGEND: u32 = 220;
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// A chart that could not be drawn (the message of the plotters error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotError(pub String);

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "drawing the chart: {}", self.0)
    }
}

impl std::error::Error for PlotError {}

fn plot_err(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// Named series of `(x, y)` points.
pub type Series = [(String, Vec<(f64, f64)>)];

/// Short axis and cell labels: `0`, `0.125`, `1.2e4`.
fn nice(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.abs() < 0.01 {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// The data range of the finite points, widened where it is empty or a single value.
fn ranges(series: &Series) -> ((f64, f64), (f64, f64)) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in series
        .iter()
        .flat_map(|(_, p)| p.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
    {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    ((x0, x1), (y0, y1))
}

/// Draw a line chart with its legend on `area` (non-finite points are skipped).
fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &Series,
) -> Result<(), PlotError> {
    let (w, _) = area.dim_in_pixel();
    let (plot, legend) = area.split_horizontally(w.saturating_sub(LEGEND));
    let ((x0, x1), (y0, y1)) = ranges(series);
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_labels(5)
        .y_labels(5)
        .x_label_formatter(&|v| nice(*v))
        .y_label_formatter(&|v| nice(*v))
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(plot_err)?;
    for (i, (_, points)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let finite = points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        chart
            .draw_series(LineSeries::new(finite, color.stroke_width(2)).point_size(2))
            .map_err(plot_err)?;
    }
    let text = ("sans-serif", 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (name, _)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let y = 48 + 18 * i as i32;
        legend
            .draw(&PathElement::new(
                vec![(10, y), (30, y)],
                color.stroke_width(3),
            ))
            .map_err(plot_err)?;
        legend
            .draw(&Text::new(name.clone(), (36, y), text.clone()))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// Render into an SVG document of `size` pixels.
fn render(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), PlotError>,
) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// A line chart of named series of `(x, y)` points (non-finite points are skipped), legend on
/// the right.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &Series,
) -> Result<String, PlotError> {
    render((W, H), |root| {
        draw_lines(root, title, x_label, y_label, series)
    })
}

/// A heat map of `values[r][c]` (white = min, dark blue = max) with row and column labels and
/// the value printed in each cell.
pub fn heatmap(
    title: &str,
    rows: &[String],
    cols: &[String],
    values: &[Vec<f64>],
) -> Result<String, PlotError> {
    let cell_w = (560.0 / cols.len().max(1) as f64).clamp(28.0, 70.0);
    let cell_h = 22.0;
    let (left, top) = (170.0, 60.0);
    let w = left + cell_w * cols.len() as f64 + 20.0;
    let h = top + cell_h * rows.len() as f64 + 20.0;
    let (lo, hi) = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let px = |v: f64| v.round() as i32;
    render((w.ceil() as u32, h.ceil() as u32), |root| {
        let font = |size: f64, color: &RGBColor, h: HPos| {
            ("sans-serif", size)
                .into_font()
                .color(color)
                .pos(Pos::new(h, VPos::Center))
        };
        root.draw(&Text::new(
            title.to_string(),
            (10, 20),
            font(17.0, &BLACK, HPos::Left),
        ))
        .map_err(plot_err)?;
        for (c, name) in cols.iter().enumerate() {
            root.draw(&Text::new(
                name.clone(),
                (px(left + cell_w * (c as f64 + 0.5)), px(top - 12.0)),
                font(14.0, &BLACK, HPos::Center),
            ))
            .map_err(plot_err)?;
        }
        for (r, name) in rows.iter().enumerate() {
            let y = top + cell_h * r as f64;
            root.draw(&Text::new(
                name.clone(),
                (px(left - 6.0), px(y + cell_h / 2.0)),
                font(14.0, &BLACK, HPos::Right),
            ))
            .map_err(plot_err)?;
            for (c, &v) in values[r].iter().enumerate() {
                let f = if v.is_finite() { (v - lo) / span } else { 0.0 };
                let fill = RGBColor(
                    (255.0 - 225.0 * f) as u8,
                    (255.0 - 170.0 * f) as u8,
                    (255.0 - 75.0 * f) as u8,
                );
                let x = left + cell_w * c as f64;
                let corners = [(px(x), px(y)), (px(x + cell_w), px(y + cell_h))];
                root.draw(&Rectangle::new(corners, fill.filled()))
                    .map_err(plot_err)?;
                root.draw(&Rectangle::new(corners, WHITE.stroke_width(1)))
                    .map_err(plot_err)?;
                let ink = if f > 0.6 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    nice(v),
                    (px(x + cell_w / 2.0), px(y + cell_h / 2.0)),
                    font(14.0, &ink, HPos::Center),
                ))
                .map_err(plot_err)?;
            }
        }
        Ok(())
    })
}

/// Write a rendered chart to `path`; either failure is an error naming `path`.
pub fn write_svg(path: &Path, chart: Result<String, PlotError>) -> Result<(), TrainError> {
    let svg = chart.map_err(|e| TrainError::io(path, std::io::Error::other(e)))?;
    std::fs::write(path, svg).map_err(|e| TrainError::io(path, e))
}

/// The per-epoch series of a run's `metrics.jsonl`: `(training loss, validation monitor,
/// monitor name)`, one series per trained model (`cell`; `all` for a one-model run).
fn read_metrics(path: &Path) -> Result<(Vec<SeriesOf>, Vec<SeriesOf>, String), TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut loss: Vec<SeriesOf> = Vec::new();
    let mut valid: Vec<SeriesOf> = Vec::new();
    let mut monitor = String::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |m: String| {
            TrainError::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("line {}: {m}", i + 1),
                ),
            )
        };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let epoch = v["epoch"]
            .as_f64()
            .ok_or_else(|| bad("no `epoch`".into()))?;
        let cell = v["cell"].as_str().unwrap_or("all").to_string();
        if let Some(m) = v["monitor"].as_str() {
            monitor = m.to_string();
        }
        let push = |to: &mut Vec<SeriesOf>, y: Option<f64>| {
            let y = y.unwrap_or(f64::NAN);
            match to.iter_mut().find(|(c, _)| *c == cell) {
                Some((_, p)) => p.push((epoch, y)),
                None => to.push((cell.clone(), vec![(epoch, y)])),
            }
        };
        push(&mut loss, v["train_loss"].as_f64());
        push(&mut valid, v["monitor_value"].as_f64());
    }
    Ok((loss, valid, monitor))
}

type SeriesOf = (String, Vec<(f64, f64)>);

/// Read `<run_dir>/metrics.jsonl` (one line per epoch, written by the trainer) and write
/// `<run_dir>/curve.svg`: the mean training loss per epoch above, the validation metric that
/// early stopping monitors (`train.monitor`) below; one line per trained model.
///
/// A stream run's `metrics.jsonl` (one line per window) gives the stream chart instead
/// (`stream_chart`).
pub fn write_training_curve(run_dir: &Path) -> Result<(), TrainError> {
    let path = run_dir.join("metrics.jsonl");
    let name = run_dir
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| run_dir.display().to_string());
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    if text.starts_with("{\"window\"") {
        return write_svg(
            &run_dir.join("curve.svg"),
            stream_chart(&name, &path, &text),
        );
    }
    let (loss, valid, monitor) = read_metrics(&path)?;
    let monitor = if monitor.is_empty() {
        "validation metric".to_string()
    } else {
        monitor
    };
    let chart = render((W, 2 * H), |root| {
        let panels = root.split_evenly((2, 1));
        draw_lines(
            &panels[0],
            &format!("{name}: training loss"),
            "epoch",
            "mean training loss",
            &loss,
        )?;
        draw_lines(
            &panels[1],
            &format!("{name}: validation {monitor}"),
            "epoch",
            &format!("validation {monitor}"),
            &valid,
        )
    });
    write_svg(&run_dir.join("curve.svg"), chart)
}

/// A stream run's chart: progressive AUC per task over time (days since the first row, or
/// window index without a time column) above, live embedding rows and table memory below.
fn stream_chart(name: &str, path: &Path, text: &str) -> Result<String, PlotError> {
    let mut auc: Vec<SeriesOf> = Vec::new();
    let mut rows: Vec<SeriesOf> = vec![("live rows (all tables)".into(), Vec::new())];
    let mut mib: Vec<SeriesOf> = vec![("rows' MiB (weights + optimizer)".into(), Vec::new())];
    let mut t0 = None;
    let mut by_time = true;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| PlotError(format!("{}: line {}: {e}", path.display(), i + 1)))?;
        let x = match (v["first_time"].as_i64(), by_time) {
            (Some(t), true) => (t - *t0.get_or_insert(t)) as f64 / 86_400.0,
            _ => {
                by_time = false;
                v["window"].as_f64().unwrap_or(i as f64)
            }
        };
        for t in v["tasks"].as_array().into_iter().flatten() {
            let task = t["task"].as_str().unwrap_or("task").to_string();
            let y = t["auc"].as_f64().unwrap_or(f64::NAN);
            match auc.iter_mut().find(|(c, _)| *c == task) {
                Some((_, p)) => p.push((x, y)),
                None => auc.push((task, vec![(x, y)])),
            }
        }
        let tables = v["tables"].as_array().cloned().unwrap_or_default();
        let sum = |k: &str| tables.iter().filter_map(|t| t[k].as_f64()).sum::<f64>();
        rows[0].1.push((x, sum("live_rows")));
        mib[0].1.push((x, sum("bytes") / (1024.0 * 1024.0)));
    }
    let xlabel = if by_time {
        "days since the first row"
    } else {
        "window"
    };
    render((W, 3 * H), |root| {
        let panels = root.split_evenly((3, 1));
        draw_lines(
            &panels[0],
            &format!("{name}: progressive AUC per window"),
            xlabel,
            "AUC",
            &auc,
        )?;
        draw_lines(&panels[1], "embedding rows", xlabel, "live rows", &rows)?;
        draw_lines(&panels[2], "embedding memory", xlabel, "MiB", &mib)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_documents_with_every_series_and_label() {
        let s = line_chart(
            "t <1>",
            "x",
            "y",
            &[
                ("a".into(), vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0)]),
                ("b".into(), vec![]),
            ],
        )
        .unwrap();
        assert!(
            s.starts_with("<svg") && s.trim_end().ends_with("</svg>"),
            "{s}"
        );
        assert!(s.contains("t &lt;1&gt;"), "{s}");
        assert!(
            s.contains(">\na\n</text>") || s.contains(">a</text>"),
            "{s}"
        );
        assert!(
            s.contains(">\nb\n</text>") || s.contains(">b</text>"),
            "{s}"
        );
        // Series `a` is one line through its two finite points; both series are in the legend.
        let lines: Vec<&str> = s
            .lines()
            .filter(|l| l.starts_with("<polyline") && l.contains("stroke-width=\"2\""))
            .collect();
        assert_eq!(lines.len(), 1, "{s}");
        assert!(lines[0].contains("#1F77B4") && lines[0].matches(',').count() == 2);
        assert!(s.contains("stroke=\"#D62728\" stroke-width=\"3\""), "{s}");
        let h = heatmap(
            "h",
            &["r0".into()],
            &["c0".into(), "c1".into()],
            &[vec![0.25, 0.75]],
        )
        .unwrap();
        assert!(h.contains("0.25") && h.contains("0.75"), "{h}");
        assert!(h.contains("r0") && h.contains("c1"), "{h}");
    }

    #[test]
    fn training_curve_reads_metrics_and_names_the_file_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_training_curve(dir.path()).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl"), "{err}");
        std::fs::write(
            dir.path().join("metrics.jsonl"),
            "{\"cell\":null,\"epoch\":1,\"train_loss\":0.7,\"monitor\":\"auc_mean_cells\",\"monitor_value\":0.6}\n\
             {\"cell\":null,\"epoch\":2,\"train_loss\":0.5,\"monitor\":\"auc_mean_cells\",\"monitor_value\":null}\n",
        )
        .unwrap();
        write_training_curve(dir.path()).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("curve.svg")).unwrap();
        assert!(svg.contains("training loss") && svg.contains("validation auc_mean_cells"));
        std::fs::write(dir.path().join("metrics.jsonl"), "not json\n").unwrap();
        let err = write_training_curve(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("metrics.jsonl") && err.contains("line 1"),
            "{err}"
        );
    }
}
