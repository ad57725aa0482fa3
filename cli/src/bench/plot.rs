//! Plots of a benchmark record, as SVG and PNG (plotters, no system libraries).
//!
//! Sweeps (`conv`, `relu`) are log-log line charts with the CPU and the GPU on one chart, min-max
//! bars, and the GPU's speedup written at each GPU point. Networks (`train`, `infer`) are
//! horizontal bars: training iterations stacked by layer kind (one panel per device, each with its
//! own scale), inference times on a log scale; one bar per link model measured, those over
//! shaped links labelled with the model and annotated with their lower bound. Text uses the
//! DejaVu Sans subset compiled into the binary (or the font at `$CRYPTGPU_FONT`); if no font
//! loads, the plots are drawn without text and a warning says so.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::nets::KINDS;
use super::report::{Figure, NetRun, Record};

/// Size of the PNGs and SVGs of sweeps.
pub const SIZE: (u32, u32) = (800, 500);

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");
const CPU_COLOR: RGBColor = RGBColor(31, 119, 180);
const GPU_COLOR: RGBColor = RGBColor(214, 39, 40);
/// Colours of [`KINDS`], in order.
const KIND_COLORS: [RGBColor; KINDS.len()] = [
    RGBColor(31, 119, 180),
    RGBColor(23, 190, 207),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(170, 170, 170),
];

/// Registers the font once; `false` when none could be loaded (plots then carry no text).
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let bytes: &'static [u8] = match std::env::var_os("CRYPTGPU_FONT") {
            Some(path) => match std::fs::read(&path) {
                Ok(b) => Box::leak(b.into_boxed_slice()),
                Err(e) => {
                    eprintln!("warning: CRYPTGPU_FONT={}: {e}; using the built-in font", Path::new(&path).display());
                    FONT
                }
            },
            None => FONT,
        };
        let ok = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .or_else(|_| plotters::style::register_font("sans-serif", FontStyle::Normal, FONT))
            .is_ok();
        if !ok {
            eprintln!("warning: no usable font: plots are drawn without any text");
        }
        ok
    })
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("{e}")
}

fn color(backend: &str) -> RGBColor {
    if backend == "cuda" {
        GPU_COLOR
    } else {
        CPU_COLOR
    }
}

fn device_name(backend: &str) -> &'static str {
    if backend == "cuda" {
        "GPU"
    } else {
        "CPU"
    }
}

/// 50000 -> "50k", 2000000 -> "2M", 0.25 -> "0.25".
pub fn short_number(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    let a = v.abs();
    if a >= 1e6 {
        trim(format!("{:.1}", v / 1e6)) + "M"
    } else if a >= 1e3 {
        trim(format!("{:.1}", v / 1e3)) + "k"
    } else if a >= 1.0 || a == 0.0 {
        trim(format!("{v:.1}"))
    } else {
        let digits = (-a.log10().floor()) as usize + 1;
        trim(format!("{v:.digits$}"))
    }
}

/// What one plot shows.
enum Chart<'a> {
    Sweep(&'a Figure),
    Train(&'a Record, Vec<&'a NetRun>),
    Infer(Vec<&'a NetRun>),
}

/// Labels of a log axis only at 1, 2 and 5 times a power of ten (the other ticks stay unlabelled).
fn log_label(v: f64) -> String {
    if v <= 0.0 {
        return String::new();
    }
    let m = v / 10f64.powf(v.log10().floor());
    if [1.0, 2.0, 5.0, 10.0].iter().any(|k| (m - k).abs() < 0.01 * k) {
        short_number(v)
    } else {
        String::new()
    }
}

/// Draws every plot of `record` into `dir`; returns the files written.
pub fn render(record: &Record, dir: &Path) -> Result<Vec<PathBuf>> {
    let text = font_ready();
    let footer = footer(record);
    let mut written = Vec::new();
    for fig in &record.figures {
        let stem = dir.join(format!("{}-{}", fig.id, record.bench));
        written.extend(both(&stem, SIZE, &Chart::Sweep(fig), &footer, text)?);
    }
    let nets: Vec<&NetRun> = record.nets.iter().filter(|n| n.seconds.is_some()).collect();
    if !nets.is_empty() {
        let backends = record.settings.backends.len().max(1);
        if record.bench == "train" {
            let height = (150 + 46 * nets.len().div_ceil(backends) as u32).max(SIZE.1 - 100);
            let stem = dir.join("table5-train");
            written.extend(both(&stem, (SIZE.0, height), &Chart::Train(record, nets), &footer, text)?);
        } else {
            let height = (150 + 34 * nets.len() as u32).max(SIZE.1 - 100);
            let stem = dir.join(&record.bench);
            written.extend(both(&stem, (SIZE.0, height), &Chart::Infer(nets), &footer, text)?);
        }
    }
    Ok(written)
}

/// Renders `chart` to `<stem>.svg` and `<stem>.png`.
fn both(stem: &Path, size: (u32, u32), chart: &Chart<'_>, footer: &str, text: bool) -> Result<Vec<PathBuf>> {
    let svg = stem.with_extension("svg");
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        draw(&root, chart, footer, text)?;
        root.present().map_err(err)?;
    }
    let png = stem.with_extension("png");
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw(&root, chart, footer, text)?;
        root.present().map_err(err)?;
    }
    Ok(vec![svg, png])
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &Chart<'_>, footer: &str, text: bool) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let (w, h) = root.dim_in_pixel();
    let body = if text {
        root.draw(&Text::new(
            footer.to_string(),
            (8, h as i32 - 16),
            ("sans-serif", 11).into_font().color(&BLACK.mix(0.6)),
        ))
        .map_err(err)?;
        root.margin(0, 20, 0, 0)
    } else {
        root.clone()
    };
    match chart {
        Chart::Sweep(fig) => sweep_chart(&body, fig, text),
        Chart::Train(record, nets) => {
            let backends: Vec<&String> = record.settings.backends.iter().collect();
            let panels = body.split_evenly((1, backends.len().max(1)));
            let cpu: Vec<&NetRun> = nets.iter().copied().filter(|n| n.backend == "cpu").collect();
            for (panel, backend) in panels.iter().zip(&backends) {
                let rows: Vec<&NetRun> = nets.iter().copied().filter(|n| &&n.backend == backend).collect();
                train_panel(panel, backend, &rows, &cpu, text, w as f64 / backends.len() as f64)?;
            }
            Ok(())
        }
        Chart::Infer(nets) => infer_chart(&body, nets, text),
    }
}

fn footer(record: &Record) -> String {
    let m = &record.machine;
    let gpu = m.gpu.as_ref().and_then(|g| g.get("name")).and_then(|n| n.as_str()).map(|n| format!("; GPU {n}"));
    format!(
        "CPU {} ({} threads){}; three in-process parties; {}; commit {}",
        m.cpu_model,
        m.available_parallelism,
        gpu.unwrap_or_default(),
        &record.date_utc[..record.date_utc.len().min(10)],
        short_commit(&record.git_commit)
    )
}

/// `abcdef123456-dirty` from a full commit id with an optional `-dirty`.
fn short_commit(c: &str) -> String {
    let (hash, dirty) = c.split_once('-').map_or((c, ""), |(h, d)| (h, d));
    let hash = &hash[..hash.len().min(12)];
    if dirty.is_empty() {
        hash.to_string()
    } else {
        format!("{hash}-{dirty}")
    }
}

/// Log-log chart of a sweep: one line per device, min-max bars, speedups at the GPU points.
fn sweep_chart<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure, text: bool) -> Result<()> {
    let pts: Vec<(f64, f64, f64)> = fig
        .series
        .iter()
        .flat_map(|s| &s.points)
        .filter_map(|p| p.seconds.as_ref().map(|t| (p.x, t.min, t.max)))
        .collect();
    if pts.is_empty() {
        return Ok(());
    }
    let (x0, x1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.2)));
    let (x0, x1) = (x0 / 1.4, x1 * 1.4);
    let (y0, y1) = ((y0 / 2.0).max(1e-7), y1 * 2.5);
    let mut builder = ChartBuilder::on(root);
    builder.margin(14);
    if text {
        builder.caption(&fig.title, ("sans-serif", 17)).x_label_area_size(42).y_label_area_size(62);
    }
    // Ticks at the measured sizes (as the paper labels its sweeps) and at every power of ten.
    let mut xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    if xs.len() > 12 {
        xs = xs.iter().step_by(xs.len().div_ceil(12)).copied().collect();
    }
    let ys: Vec<f64> = (y0.log10().floor() as i32..=y1.log10().ceil() as i32)
        .map(|e| 10f64.powi(e))
        .filter(|y| (y0..=y1).contains(y))
        .collect();
    let mut chart = builder
        .build_cartesian_2d((x0..x1).log_scale().with_key_points(xs), (y0..y1).log_scale().with_key_points(ys))
        .map_err(err)?;
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(BLACK.mix(0.05)).bold_line_style(BLACK.mix(0.15));
    if text {
        mesh.x_desc(fig.x_label.as_str())
            .y_desc("seconds (median, min-max bar)")
            .x_label_formatter(&|v| short_number(*v))
            .y_label_formatter(&|v| short_number(*v))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(err)?;
    for s in &fig.series {
        let c = color(&s.backend);
        let line: Vec<(f64, f64)> =
            s.points.iter().filter_map(|p| p.seconds.as_ref().map(|t| (p.x, t.median))).collect();
        let series = chart.draw_series(LineSeries::new(line.clone(), c.stroke_width(2))).map_err(err)?;
        if text {
            series
                .label(device_name(&s.backend))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(2)));
        }
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 4, c.filled()))).map_err(err)?;
        chart
            .draw_series(s.points.iter().filter_map(|p| {
                p.seconds.as_ref().map(|t| PathElement::new(vec![(p.x, t.min), (p.x, t.max)], c.stroke_width(1)))
            }))
            .map_err(err)?;
    }
    if text {
        let gpu = fig.series.iter().find(|s| s.backend == "cuda");
        let style = ("sans-serif", 13).into_font().color(&GPU_COLOR).pos(Pos::new(HPos::Center, VPos::Top));
        for sp in &fig.speedup {
            let y =
                gpu.and_then(|g| g.points.iter().find(|p| p.x == sp.x)).and_then(|p| p.seconds.as_ref()).map(|t| t.min);
            if let Some(y) = y {
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("{:.0}x", sp.gpu_over_cpu),
                        (sp.x, y / 1.25),
                        style.clone(),
                    )))
                    .map_err(err)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        if !fig.speedup.is_empty() {
            let (lo, hi) = fig
                .speedup
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), s| (a.min(s.gpu_over_cpu), b.max(s.gpu_over_cpu)));
            let (w, h) = root.dim_in_pixel();
            let note = format!("GPU speedup over CPU: {lo:.1}x to {hi:.1}x");
            root.draw(&Text::new(
                note,
                (w as i32 - 20, h as i32 - 62),
                ("sans-serif", 14).into_font().color(&GPU_COLOR).pos(Pos::new(HPos::Right, VPos::Bottom)),
            ))
            .map_err(err)?;
        }
    }
    Ok(())
}

/// `, lan` (the run's link model), or nothing for unshaped links.
fn link_label(r: &NetRun) -> String {
    if r.net.is_none() {
        String::new()
    } else {
        format!(", {}", r.net)
    }
}

/// ` (bound 0.12 s)`: the lower bound from rounds and bytes of a shaped run.
fn bound_note(r: &NetRun) -> String {
    if r.net.is_none() {
        String::new()
    } else {
        format!(" (bound {} s)", short_number(r.lower_bound_seconds))
    }
}

/// Whether two runs are of the same configuration, batch and link model (on other devices).
fn same_point(a: &NetRun, b: &NetRun) -> bool {
    a.id == b.id && a.batch == b.batch && a.net == b.net
}

/// Y range of `n` rows (row i at y = n - 1 - i, its label above its bar).
fn row_axis(n: usize) -> std::ops::Range<f64> {
    -0.5..(n as f64 - 0.25)
}

/// One device's training iterations, stacked by layer kind (linear scale).
fn train_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    backend: &str,
    rows: &[&NetRun],
    cpu: &[&NetRun],
    text: bool,
    _width: f64,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let n = rows.len();
    let labels: Vec<String> = rows.iter().map(|r| format!(" {} b{}{}", r.id, r.batch, link_label(r))).collect();
    let total = |r: &NetRun| r.split_party0.values().sum::<f64>();
    let xmax = rows.iter().map(|r| total(r)).fold(0.0, f64::max) * 1.7;
    let mut builder = ChartBuilder::on(area);
    builder.margin(12);
    if text {
        builder
            .caption(format!("One private training iteration, {}", device_name(backend)), ("sans-serif", 17))
            .x_label_area_size(40)
            .y_label_area_size(10);
    }
    let mut chart = builder.build_cartesian_2d(0.0..xmax.max(1e-6), row_axis(n)).map_err(err)?;
    let mut mesh = chart.configure_mesh();
    mesh.disable_y_mesh().light_line_style(BLACK.mix(0.05)).bold_line_style(BLACK.mix(0.15));
    if text {
        mesh.x_desc("seconds (party 0, median repetition)")
            .y_labels(0)
            .x_label_formatter(&|v| short_number(*v))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(err)?;
    for (k, kind) in KINDS.iter().enumerate() {
        let c = KIND_COLORS[k];
        let bars = rows.iter().enumerate().map(|(i, r)| {
            let y = (n - 1 - i) as f64;
            let start: f64 = KINDS[..k].iter().map(|q| r.split_party0.get(*q).copied().unwrap_or(0.0)).sum();
            let v = r.split_party0.get(*kind).copied().unwrap_or(0.0);
            Rectangle::new([(start, y - 0.25), (start + v, y + 0.25)], c.filled())
        });
        let s = chart.draw_series(bars).map_err(err)?;
        // Only the kinds some row has get a legend entry (batch norm is rare).
        if text && rows.iter().any(|r| r.split_party0.get(*kind).is_some_and(|v| *v > 0.0)) {
            s.label(*kind).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
    }
    if text {
        let notes = rows.iter().enumerate().map(|(i, r)| {
            let y = (n - 1 - i) as f64;
            let med = r.seconds.as_ref().map_or(0.0, |s| s.median);
            let mut note = format!(" {}", short_number(med)) + " s" + &bound_note(r);
            if r.backend == "cuda" {
                if let Some(c) = cpu.iter().find(|c| same_point(c, r)).and_then(|c| c.seconds.as_ref()) {
                    note += &format!(" ({:.0}x)", c.median / med.max(1e-12));
                }
            }
            Text::new(
                note,
                (total(r), y),
                ("sans-serif", 13).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
            )
        });
        chart.draw_series(notes).map_err(err)?;
        let names = labels.iter().enumerate().map(|(i, l)| {
            let y = (n - 1 - i) as f64 + 0.27;
            Text::new(
                l.clone(),
                (0.0, y),
                ("sans-serif", 13).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Bottom)),
            )
        });
        chart.draw_series(names).map_err(err)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// Private inference times on a log scale, one bar per configuration and device.
fn infer_chart<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, nets: &[&NetRun], text: bool) -> Result<()> {
    let n = nets.len();
    let labels: Vec<String> =
        nets.iter().map(|r| format!(" {} b{} {}{}", r.id, r.batch, device_name(&r.backend), link_label(r))).collect();
    let med = |r: &NetRun| r.seconds.as_ref().map_or(f64::NAN, |s| s.median);
    let lo = nets.iter().map(|r| med(r)).fold(f64::MAX, f64::min) / 3.0;
    let hi = nets.iter().map(|r| med(r)).fold(f64::MIN, f64::max) * 6.0;
    let mut builder = ChartBuilder::on(root);
    builder.margin(12);
    if text {
        builder
            .caption("Private inference (logits opened)", ("sans-serif", 17))
            .x_label_area_size(40)
            .y_label_area_size(10);
    }
    let mut chart = builder.build_cartesian_2d((lo.max(1e-7)..hi.max(1e-6)).log_scale(), row_axis(n)).map_err(err)?;
    let mut mesh = chart.configure_mesh();
    mesh.disable_y_mesh().light_line_style(BLACK.mix(0.05)).bold_line_style(BLACK.mix(0.15));
    if text {
        mesh.x_desc("seconds per batch (median; log scale)")
            .y_labels(0)
            .x_label_formatter(&|v| log_label(*v))
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 14));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(err)?;
    let bars = nets.iter().enumerate().map(|(i, r)| {
        let y = (n - 1 - i) as f64;
        Rectangle::new([(lo, y - 0.25), (med(r), y + 0.25)], color(&r.backend).filled())
    });
    chart.draw_series(bars).map_err(err)?;
    if text {
        let notes = nets.iter().enumerate().map(|(i, r)| {
            let y = (n - 1 - i) as f64;
            let mut note = format!(" {} s", short_number(med(r))) + &bound_note(r);
            if r.backend == "cuda" {
                if let Some(c) = nets.iter().find(|c| c.backend == "cpu" && same_point(c, r)) {
                    note += &format!(" ({:.0}x)", med(c) / med(r));
                }
            }
            Text::new(
                note,
                (med(r), y),
                ("sans-serif", 12).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
            )
        });
        chart.draw_series(notes).map_err(err)?;
        let names = labels.iter().enumerate().map(|(i, l)| {
            let y = (n - 1 - i) as f64 + 0.27;
            Text::new(
                l.clone(),
                (lo, y),
                ("sans-serif", 12).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Bottom)),
            )
        });
        chart.draw_series(names).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers() {
        assert_eq!(short_number(50_000.0), "50k");
        assert_eq!(short_number(2_500_000.0), "2.5M");
        assert_eq!(short_number(32.0), "32");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(short_number(0.001), "0.001");
    }

    #[test]
    fn the_built_in_font_loads() {
        assert!(font_ready());
    }

    /// Without a font the charts are still drawn (no text), not an error.
    #[test]
    fn charts_without_text() {
        use super::super::report::{Point, Series, Stats};
        let point = |x: f64, t: f64| Point {
            x,
            shape: String::new(),
            seconds: Some(Stats::new(vec![t, t * 1.2], vec![t])),
            rounds: 9,
            bytes_sent_per_party: [0; 3],
            lower_bound_seconds: 0.0,
            peak_rss_bytes: Some(1 << 30),
            note: None,
        };
        let fig = Figure {
            id: "fig2".into(),
            title: "t".into(),
            x_label: "x".into(),
            series: vec![Series { backend: "cpu".into(), points: vec![point(1e3, 0.01), point(1e4, 0.1)] }],
            speedup: Vec::new(),
            paper: String::new(),
        };
        let dir = std::env::temp_dir().join(format!("cryptgpu-plot-notext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = both(&dir.join("fig2"), SIZE, &Chart::Sweep(&fig), "", false).unwrap();
        assert!(files.iter().all(|f| f.exists()));
        std::fs::remove_dir_all(&dir).ok();
    }
}
