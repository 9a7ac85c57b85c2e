//! Drawing a simulated plan, so a person sees where prescale scaled early and where it missed.
//!
//! Two panels share the time axis:
//! - top: the load, the forecast in use (point) with the band up to its upper quantile, the
//!   capacity prescale had ready (`ready * capacity`, `docs/evaluation.md`), and red marks on
//!   the steps where the load exceeded it;
//! - bottom: replicas as step lines: prescale's `desired`, the reactive baseline and the oracle.
//!
//! The format comes from the file extension: `.svg` needs no font at all (text is left to the
//! viewer); `.png` draws text with a TrueType font found on the system (or named by
//! `PRESCALE_PLOT_FONT`). Long plans are reduced to one bucket per pixel column (the maximum
//! of the load and replicas, the minimum of the ready capacity), so a 40,000-row plan draws
//! as fast and as small as a 1,300-row one.
//!
//! IO: writes the image file, and for PNG reads the font file once per process.

pub mod canvas;

use std::path::Path;

use plotters::{
    coord::{
        Shift,
        ranged1d::{DefaultFormatting, KeyPointHint},
        types::RangedCoordf64,
    },
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

pub use canvas::FONT_ENV;
use canvas::{
    BAND, FORECAST, Format, LOAD, ORACLE, PRESCALE, REACTIVE, READY, SHORT, SUBTLE, USE_SVG_OR_PNG,
    WEEKEND, number,
};

use super::PlanRow;

/// Image size in pixels (SVG user units).
const WIDTH: u32 = 1400;
const HEIGHT: u32 = 820;
/// Above this many rows, rows are grouped into one bucket per pixel column.
const DOWNSAMPLE_ABOVE: usize = 4_000;
/// Width of the y label area; the plotting area is about `WIDTH - Y_LABELS - 2 * MARGIN` wide.
const Y_LABELS: u32 = 70;
const MARGIN: u32 = 16;

/// Why a plot could not be written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlotError {
    #[error("{path}: unknown image format {ext:?}; {hint}", hint = USE_SVG_OR_PNG)]
    UnknownFormat { path: String, ext: String },
    #[error("nothing to plot: the plan has no rows")]
    Empty,
    #[error("capacity per replica must be a positive number, got {0}")]
    BadCapacity(f64),
    #[error(
        "no font found to draw PNG text (tried ${env} and {count} system paths such as {first}); \
         install one (e.g. `apt-get install fonts-dejavu-core`), set {env} to a .ttf file, \
         or plot to an .svg path, which needs no font"
    )]
    NoFont {
        env: &'static str,
        count: usize,
        first: &'static str,
    },
    #[error("{path}: not a usable font: {message}")]
    BadFont { path: String, message: String },
    #[error("{path}: cannot write the plot: {message}")]
    Draw { path: String, message: String },
}

/// Writes a chart of `rows` to `path` (`.svg` or `.png`). `capacity` is what one replica
/// serves in a step and `startup` the steps a new replica takes to serve, as in
/// docs/evaluation.md; they decide which steps are marked as short of capacity.
pub fn write_plot(
    path: &Path,
    rows: &[PlanRow],
    title: &str,
    capacity: f64,
    startup: usize,
) -> Result<(), PlotError> {
    let format = Format::of(path)?;
    if rows.is_empty() {
        return Err(PlotError::Empty);
    }
    if !(capacity.is_finite() && capacity > 0.0) {
        return Err(PlotError::BadCapacity(capacity));
    }
    let chart = Chart::new(rows, title, capacity, startup);
    canvas::render(
        path,
        (WIDTH, HEIGHT),
        format,
        |root, family| chart.draw(root, family).map_err(|e| e.to_string()),
        |root, family| chart.draw(root, family).map_err(|e| e.to_string()),
    )
}

/// One operating point of a frontier chart: cost relative to the reactive baseline at its
/// default, violation steps, and a label (e.g. `q0.9`).
#[derive(Debug, Clone, PartialEq)]
pub struct FrontierMark {
    pub cost: f64,
    pub violations: f64,
    pub label: String,
}

/// Writes the frontier chart to `path` (`.svg` or `.png`): violation steps against cost (both
/// relative to the reactive baseline at its default) for the plan's operating points and for
/// the reactive family, so the curve lower at a given cost is the better buy.
pub fn write_frontier_plot(
    path: &Path,
    title: &str,
    subtitle: &str,
    plan: &[FrontierMark],
    family: &[FrontierMark],
) -> Result<(), PlotError> {
    let format = Format::of(path)?;
    if plan.is_empty() {
        return Err(PlotError::Empty);
    }
    let chart = FrontierChart {
        title,
        subtitle,
        plan,
        family,
    };
    canvas::render(
        path,
        (WIDTH, HEIGHT),
        format,
        |root, f| chart.draw(root, f).map_err(|e| e.to_string()),
        |root, f| chart.draw(root, f).map_err(|e| e.to_string()),
    )
}

struct FrontierChart<'a> {
    title: &'a str,
    subtitle: &'a str,
    plan: &'a [FrontierMark],
    family: &'a [FrontierMark],
}

impl FrontierChart<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        family: &str,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let rest = draw_heading(root, family, self.title, self.subtitle)?;
        let (legend, area) = rest.split_vertically(26);
        let all: Vec<&FrontierMark> = self
            .plan
            .iter()
            .chain(self.family)
            .filter(|m| m.is_finite())
            .collect();
        let (x0, x1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), m| {
            (a.min(m.cost), b.max(m.cost))
        });
        let (x0, x1) = if x0 < x1 { (x0, x1) } else { (0.5, 2.0) };
        let pad = (x1 - x0) * 0.05;
        let ymax = all.iter().map(|m| m.violations).fold(1.0_f64, f64::max) * 1.08;
        let mut chart = ChartBuilder::on(&area)
            .margin_right(12)
            .x_label_area_size(40)
            .y_label_area_size(Y_LABELS)
            .build_cartesian_2d((x0 - pad)..(x1 + pad), 0.0..ymax)?;
        let font = |size: f64| (family, size).into_font();
        chart
            .configure_mesh()
            .x_labels(10)
            .x_label_formatter(&|x| format!("{x:.2}x"))
            .y_labels(8)
            .y_label_formatter(&|y| number(*y))
            .x_desc("cost: replica-steps / reactive baseline at its default target")
            .y_desc("violation steps")
            .label_style(font(13.0))
            .axis_desc_style(font(13.0))
            .bold_line_style(RGBColor(222, 222, 222))
            .light_line_style(TRANSPARENT)
            .draw()?;
        let plot = chart.plotting_area();
        draw_curve(plot, family, self.family, REACTIVE, 2, 3)?;
        draw_curve(plot, family, self.plan, PRESCALE, 3, 5)?;
        draw_legend(
            &legend,
            family,
            &[
                (Swatch::Line(PRESCALE, 3), "prescale at each quantile"),
                (
                    Swatch::Line(REACTIVE, 2),
                    "reactive baseline (HPA) at each target factor",
                ),
            ],
        )
    }
}

impl FrontierMark {
    /// Whether it can be drawn.
    fn is_finite(&self) -> bool {
        self.cost.is_finite() && self.violations.is_finite()
    }
}

/// `marks` as a line in order of cost, each a labelled dot of `radius`.
fn draw_curve<DB: DrawingBackend>(
    plot: &DrawingArea<DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    family: &str,
    marks: &[FrontierMark],
    color: RGBColor,
    width: u32,
    radius: u32,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut line: Vec<(f64, f64)> = marks
        .iter()
        .filter(|m| m.is_finite())
        .map(|m| (m.cost, m.violations))
        .collect();
    line.sort_by(|a, b| a.0.total_cmp(&b.0));
    let label = TextStyle::from((family, 12.0).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Bottom));
    plot.draw(&PathElement::new(line, color.stroke_width(width)))?;
    for m in marks.iter().filter(|m| m.is_finite()) {
        plot.draw(&Circle::new((m.cost, m.violations), radius, color.filled()))?;
        plot.draw(&Text::new(
            m.label.clone(),
            (m.cost, m.violations),
            label.clone(),
        ))?;
    }
    Ok(())
}

/// A white chart with the title and subtitle on top; the area below them.
fn draw_heading<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    family: &str,
    title: &str,
    subtitle: &str,
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let root = root.margin(MARGIN / 2, MARGIN / 2, MARGIN, MARGIN);
    let (head, rest) = root.split_vertically(44);
    let title_style = TextStyle::from((family, 20.0).into_font()).color(&BLACK);
    let subtitle_style = TextStyle::from((family, 13.0).into_font()).color(&SUBTLE);
    head.draw_text(title, &title_style, (0, 2))?;
    head.draw_text(subtitle, &subtitle_style, (0, 26))?;
    Ok(rest)
}

/// One drawn column: a row, or a group of rows when the plan is long.
#[derive(Debug, Clone, PartialEq)]
struct Bucket {
    /// Unix seconds where the bucket starts and ends.
    x0: f64,
    x1: f64,
    /// Highest load (NaN if none known).
    load: f64,
    forecast: Option<f64>,
    upper: Option<f64>,
    desired: u32,
    reactive: u32,
    oracle: u32,
    /// Lowest ready capacity (`ready * capacity`).
    ready_capacity: f64,
    /// Highest load among the steps short of capacity, if any.
    short: Option<f64>,
}

impl Bucket {
    /// The bucket of `rows` (and their shortfalls, `short`) for steps of `step` seconds: the
    /// highest load, forecasts and replicas, the lowest ready capacity.
    fn of(rows: &[PlanRow], short: &[(u32, bool)], step: i64, capacity: f64) -> Bucket {
        let max_of = |f: &dyn Fn(&PlanRow) -> Option<f64>| {
            rows.iter()
                .filter_map(f)
                .filter(|v| v.is_finite())
                .reduce(f64::max)
        };
        Bucket {
            x0: rows[0].timestamp as f64,
            x1: (rows[rows.len() - 1].timestamp + step) as f64,
            load: max_of(&|r| Some(r.value)).unwrap_or(f64::NAN),
            forecast: max_of(&|r| r.forecast),
            upper: max_of(&|r| r.upper),
            desired: rows.iter().map(|r| r.desired).max().unwrap_or(0),
            reactive: rows.iter().map(|r| r.reactive).max().unwrap_or(0),
            oracle: rows.iter().map(|r| r.oracle).max().unwrap_or(0),
            ready_capacity: short.iter().map(|(ready, _)| *ready).min().unwrap_or(0) as f64
                * capacity,
            short: rows
                .iter()
                .zip(short)
                .filter(|(_, (_, s))| *s)
                .map(|(r, _)| r.value)
                .reduce(f64::max),
        }
    }

    fn mid(&self) -> f64 {
        (self.x0 + self.x1) / 2.0
    }
}

struct Chart<'a> {
    title: &'a str,
    subtitle: String,
    buckets: Vec<Bucket>,
    start: f64,
    end: f64,
    prescale_short: usize,
    reactive_short: usize,
}

/// `ready[t] = min(plan[t-startup ..= t])`; whether step `t` is short of capacity.
fn shortfalls(
    rows: &[PlanRow],
    plan: impl Fn(&PlanRow) -> u32,
    capacity: f64,
    startup: usize,
) -> Vec<(u32, bool)> {
    (0..rows.len())
        .map(|t| {
            let ready = rows[t.saturating_sub(startup)..=t]
                .iter()
                .map(&plan)
                .min()
                .unwrap_or(0);
            let load = rows[t].value;
            (
                ready,
                load.is_finite() && load > ready as f64 * capacity + 1e-9,
            )
        })
        .collect()
}

impl<'a> Chart<'a> {
    fn new(rows: &[PlanRow], title: &'a str, capacity: f64, startup: usize) -> Self {
        let step = rows
            .windows(2)
            .map(|w| w[1].timestamp - w[0].timestamp)
            .find(|d| *d > 0)
            .unwrap_or(60);
        let prescale = shortfalls(rows, |r| r.desired, capacity, startup);
        let reactive = shortfalls(rows, |r| r.reactive, capacity, startup);
        let per = if rows.len() > DOWNSAMPLE_ABOVE {
            let columns = (WIDTH - Y_LABELS - 2 * MARGIN) as usize;
            rows.len().div_ceil(columns)
        } else {
            1
        };
        let buckets = rows
            .chunks(per)
            .zip(prescale.chunks(per))
            .map(|(rs, sh)| Bucket::of(rs, sh, step, capacity))
            .collect::<Vec<_>>();
        let step_text = if step % 60 == 0 {
            format!("{} min", step / 60)
        } else {
            format!("{step} s")
        };
        Self {
            title,
            subtitle: format!(
                "{} steps of {step_text}; capacity {} per replica per step; startup {startup} steps{}",
                rows.len(),
                number(capacity),
                if per > 1 {
                    format!("; drawn as the max of every {per} steps")
                } else {
                    String::new()
                },
            ),
            start: buckets[0].x0,
            end: buckets[buckets.len() - 1].x1,
            buckets,
            prescale_short: prescale.iter().filter(|(_, s)| *s).count(),
            reactive_short: reactive.iter().filter(|(_, s)| *s).count(),
        }
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        family: &str,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let rest = draw_heading(root, family, self.title, &self.subtitle)?;
        let split = (rest.dim_in_pixel().1 as f64 * 0.56) as u32;
        let (top, bottom) = rest.split_vertically(split);
        self.draw_load(&top, family)?;
        self.draw_replicas(&bottom, family)?;
        Ok(())
    }

    /// Tick positions (unix seconds) and the step between them: whole minutes, hours or days.
    fn x_ticks(&self) -> (Vec<f64>, i64) {
        const MIN: i64 = 60;
        const HOUR: i64 = 3_600;
        const DAY: i64 = 86_400;
        let span = (self.end - self.start).max(1.0) as i64;
        let steps = [
            MIN,
            5 * MIN,
            10 * MIN,
            15 * MIN,
            30 * MIN,
            HOUR,
            2 * HOUR,
            3 * HOUR,
            6 * HOUR,
            12 * HOUR,
            DAY,
            2 * DAY,
            7 * DAY,
            14 * DAY,
            28 * DAY,
        ];
        let step = steps
            .into_iter()
            .find(|s| span / s <= 14)
            .unwrap_or((span / 12 / DAY + 1) * DAY);
        // Weeks start on Mondays (1970-01-05 was one); shorter steps on UTC midnight.
        let offset = if step % (7 * DAY) == 0 { 4 * DAY } else { 0 };
        let first = (self.start as i64 - offset).div_euclid(step) * step + offset;
        let ticks = (0..)
            .map(|k| first + k * step)
            .skip_while(|t| (*t as f64) < self.start)
            // A label on the right edge would be cut off.
            .take_while(|t| (*t as f64) < self.end)
            .map(|t| t as f64)
            .collect();
        (ticks, step)
    }

    fn draw_load<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        family: &str,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let (legend, area) = area.split_vertically(26);
        let ymax = self
            .buckets
            .iter()
            .flat_map(|b| [Some(b.load), b.upper, b.forecast])
            .flatten()
            .filter(|v| v.is_finite())
            .fold(0.0_f64, f64::max);
        let ymax = if ymax > 0.0 { ymax * 1.06 } else { 1.0 };
        let (ticks, _) = self.x_ticks();
        let mut chart = ChartBuilder::on(&area)
            .margin_right(4)
            .x_label_area_size(6)
            .y_label_area_size(Y_LABELS)
            .build_cartesian_2d(TimeAxis::new(self.start..self.end, ticks), 0.0..ymax)?;
        let font = |size: f64| (family, size).into_font();
        // The time labels are on the bottom panel only.
        chart
            .configure_mesh()
            .x_label_formatter(&|_| String::new())
            .y_labels(6)
            .y_label_formatter(&|y| number(*y))
            .y_desc("load")
            .label_style(font(13.0))
            .axis_desc_style(font(13.0))
            .bold_line_style(RGBColor(222, 222, 222))
            .light_line_style(TRANSPARENT)
            .draw()?;
        let plot = chart.plotting_area();
        self.shade_weekends(plot, 0.0, ymax)?;

        self.draw_forecast_and_load(plot)?;
        self.draw_ready_and_misses(plot, ymax)?;
        let short = format!(
            "prescale short of capacity: {} steps (reactive: {}), warm-up included",
            self.prescale_short, self.reactive_short
        );
        draw_legend(
            &legend,
            family,
            &[
                (Swatch::Line(LOAD, 2), "load"),
                (Swatch::Line(FORECAST, 2), "forecast"),
                (Swatch::Area(BAND), "forecast band (to upper quantile)"),
                (Swatch::Line(READY, 2), "prescale ready capacity"),
                (Swatch::Dot(SHORT), &short),
            ],
        )
    }

    /// The forecast band (point to upper), then the point forecast, per run of steps with one;
    /// then the load over them.
    fn draw_forecast_and_load<DB: DrawingBackend>(
        &self,
        plot: &DrawingArea<DB, Cartesian2d<TimeAxis, RangedCoordf64>>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        for run in runs(&self.buckets, |b| b.forecast.is_some() && b.upper.is_some()) {
            let mut pts: Vec<(f64, f64)> = run
                .iter()
                .map(|b| (b.mid(), b.forecast.unwrap_or(0.0)))
                .collect();
            pts.extend(run.iter().rev().map(|b| {
                (
                    b.mid(),
                    b.upper.unwrap_or(0.0).max(b.forecast.unwrap_or(0.0)),
                )
            }));
            plot.draw(&Polygon::new(pts, BAND.mix(0.28).filled()))?;
        }
        for run in runs(&self.buckets, |b| b.forecast.is_some()) {
            let pts = run.iter().map(|b| (b.mid(), b.forecast.unwrap_or(0.0)));
            plot.draw(&PathElement::new(
                pts.collect::<Vec<_>>(),
                FORECAST.stroke_width(2),
            ))?;
        }
        for run in runs(&self.buckets, |b| b.load.is_finite()) {
            let pts = run.iter().map(|b| (b.mid(), b.load));
            plot.draw(&PathElement::new(
                pts.collect::<Vec<_>>(),
                LOAD.stroke_width(1),
            ))?;
        }
        Ok(())
    }

    /// The capacity prescale had ready, as a step line, and the steps short of it.
    fn draw_ready_and_misses<DB: DrawingBackend>(
        &self,
        plot: &DrawingArea<DB, Cartesian2d<TimeAxis, RangedCoordf64>>,
        ymax: f64,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let ready = steps(&self.buckets, |b| b.ready_capacity.min(ymax));
        plot.draw(&PathElement::new(ready, READY.stroke_width(1)))?;
        // Misses: a dot on the load and a tick along the bottom.
        let tick_h = ymax * 0.03;
        for b in &self.buckets {
            if let Some(v) = b.short {
                plot.draw(&Rectangle::new(
                    [(b.x0, 0.0), (b.x1, tick_h)],
                    SHORT.filled(),
                ))?;
                plot.draw(&Circle::new((b.mid(), v), 2, SHORT.filled()))?;
            }
        }

        Ok(())
    }

    fn draw_replicas<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        family: &str,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let (legend, area) = area.split_vertically(30);
        let top = self
            .buckets
            .iter()
            .map(|b| b.desired.max(b.reactive).max(b.oracle))
            .max()
            .unwrap_or(0);
        let ymax = (top as f64 * 1.08).ceil().max(top as f64 + 1.0);
        let (ticks, tick_step) = self.x_ticks();
        let mut chart = ChartBuilder::on(&area)
            .margin_right(4)
            .x_label_area_size(34)
            .y_label_area_size(Y_LABELS)
            .build_cartesian_2d(TimeAxis::new(self.start..self.end, ticks), 0.0..ymax)?;
        let font = |size: f64| (family, size).into_font();
        let whole = |y: &f64| {
            if y.fract() == 0.0 {
                format!("{y:.0}")
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_label_formatter(&|x| time_label(*x as i64, tick_step))
            .y_labels(6.min(ymax as usize + 1))
            .y_label_formatter(&whole)
            .y_desc("replicas")
            .label_style(font(13.0))
            .axis_desc_style(font(13.0))
            .bold_line_style(RGBColor(222, 222, 222))
            .light_line_style(TRANSPARENT)
            .draw()?;
        let plot = chart.plotting_area();
        self.shade_weekends(plot, 0.0, ymax)?;
        plot.draw(&PathElement::new(
            steps(&self.buckets, |b| b.oracle as f64),
            ORACLE.stroke_width(1),
        ))?;
        plot.draw(&PathElement::new(
            steps(&self.buckets, |b| b.reactive as f64),
            REACTIVE.stroke_width(1),
        ))?;
        plot.draw(&PathElement::new(
            steps(&self.buckets, |b| b.desired as f64),
            PRESCALE.stroke_width(2),
        ))?;
        draw_legend(
            &legend,
            family,
            &[
                (Swatch::Line(PRESCALE, 2), "prescale (desired)"),
                (Swatch::Line(REACTIVE, 2), "reactive (HPA-like)"),
                (Swatch::Line(ORACLE, 2), "oracle (perfect foresight)"),
                (Swatch::Area(WEEKEND), "weekend (UTC)"),
            ],
        )
    }

    /// Greys Saturdays and Sundays (UTC) behind the data.
    fn shade_weekends<
        DB: DrawingBackend,
        X: Ranged<ValueType = f64>,
        Y: Ranged<ValueType = f64>,
    >(
        &self,
        plot: &DrawingArea<DB, Cartesian2d<X, Y>>,
        y0: f64,
        y1: f64,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        const DAY: i64 = 86_400;
        let (first, last) = (
            (self.start as i64).div_euclid(DAY),
            (self.end as i64).div_euclid(DAY),
        );
        for day in first..=last {
            // 1970-01-01 was a Thursday: Monday = 0 .. Sunday = 6.
            if (day + 3).rem_euclid(7) >= 5 {
                let x0 = ((day * DAY) as f64).max(self.start);
                let x1 = (((day + 1) * DAY) as f64).min(self.end);
                if x1 > x0 {
                    plot.draw(&Rectangle::new([(x0, y0), (x1, y1)], WEEKEND.filled()))?;
                }
            }
        }
        Ok(())
    }
}

/// A tick label: the UTC date at midnight or when ticks are days apart, else the time of day.
fn time_label(t: i64, step: i64) -> String {
    let Ok(ts) = jiff::Timestamp::from_second(t) else {
        return t.to_string();
    };
    let z = ts.to_zoned(jiff::tz::TimeZone::UTC);
    if step % 86_400 == 0 || t.rem_euclid(86_400) == 0 {
        z.strftime("%a %m-%d").to_string()
    } else {
        z.strftime("%H:%M").to_string()
    }
}

/// Time (unix seconds) with ticks of our choosing (whole days, hours), labelled by the
/// caller's formatter.
struct TimeAxis {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl TimeAxis {
    fn new(range: std::ops::Range<f64>, ticks: Vec<f64>) -> Self {
        Self {
            inner: range.into(),
            ticks,
        }
    }
}

impl Ranged for TimeAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

enum Swatch {
    Line(RGBColor, u32),
    Area(RGBColor),
    Dot(RGBColor),
}

/// A legend in one row, drawn without measuring text when no font is loaded (SVG).
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    family: &str,
    items: &[(Swatch, &str)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let style = TextStyle::from((family, 13.0).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let y = area.dim_in_pixel().1 as i32 / 2;
    let mut x = Y_LABELS as i32;
    for (swatch, text) in items {
        match swatch {
            Swatch::Line(c, w) => area.draw(&PathElement::new(
                vec![(x, y), (x + 22, y)],
                c.stroke_width(*w),
            ))?,
            Swatch::Area(c) if *c == BAND => area.draw(&Rectangle::new(
                [(x, y - 6), (x + 22, y + 6)],
                c.mix(0.28).filled(),
            ))?,
            Swatch::Area(c) => {
                area.draw(&Rectangle::new([(x, y - 6), (x + 22, y + 6)], c.filled()))?;
                area.draw(&Rectangle::new(
                    [(x, y - 6), (x + 22, y + 6)],
                    RGBColor(200, 200, 200),
                ))?
            }
            Swatch::Dot(c) => {
                area.draw(&Rectangle::new([(x, y + 3), (x + 22, y + 6)], c.filled()))?;
                area.draw(&Circle::new((x + 11, y - 2), 3, c.filled()))?
            }
        }
        area.draw_text(text, &style, (x + 28, y))?;
        // Without a font (SVG) text cannot be measured: estimate from the font size plotters
        // writes (size / 1.24) and a generous average advance of 0.6 em.
        let width = area
            .estimate_text_size(text, &style)
            .map(|(w, _)| w as i32)
            .unwrap_or_else(|_| (text.chars().count() as f64 * 13.0 / 1.24 * 0.6) as i32);
        x += 28 + width + 24;
    }
    Ok(())
}

/// Maximal runs of consecutive buckets for which `keep` holds.
fn runs(buckets: &[Bucket], keep: impl Fn(&Bucket) -> bool) -> Vec<&[Bucket]> {
    buckets
        .chunk_by(|a, b| keep(a) == keep(b))
        .filter(|run| keep(&run[0]))
        .collect()
}

/// A step line: each bucket's value held from its start to its end.
fn steps(buckets: &[Bucket], value: impl Fn(&Bucket) -> f64) -> Vec<(f64, f64)> {
    buckets
        .iter()
        .flat_map(|b| [(b.x0, value(b)), (b.x1, value(b))])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<PlanRow> {
        (0..n)
            .map(|i| {
                let value = 100.0
                    + 80.0 * ((i as f64) / 120.0).sin()
                    + if i % 700 == 350 { 300.0 } else { 0.0 };
                let fc = (i >= 30).then(|| 100.0 + 80.0 * ((i as f64) / 120.0).sin());
                PlanRow {
                    timestamp: 1_772_409_600 + 60 * i as i64,
                    value,
                    forecast: fc,
                    upper: fc.map(|f| f * 1.2),
                    desired: (fc.unwrap_or(value) * 1.2 / 20.0).ceil() as u32,
                    reactive: (value / 20.0).ceil() as u32,
                    oracle: (value / 25.0).ceil() as u32,
                    reason: "forecast".into(),
                }
            })
            .collect()
    }

    fn out(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("prescale-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn svg_has_the_legend() {
        let path = out("small.svg");
        write_plot(&path, &rows(600), "test plan", 25.0, 5).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        for name in [
            "load",
            "forecast",
            "prescale (desired)",
            "reactive",
            "oracle",
            "short of capacity",
            "test plan",
        ] {
            assert!(svg.contains(name), "no {name:?} in the SVG");
        }
        // The spike at row 350 is short of capacity: there is a red mark.
        assert!(svg.contains("#D62728"), "no red mark");
    }

    #[test]
    fn png_when_a_font_exists() {
        let path = out("small.png");
        match write_plot(&path, &rows(600), "test plan", 25.0, 5) {
            Ok(()) => {
                let bytes = std::fs::read(&path).unwrap();
                assert_eq!(&bytes[1..4], b"PNG");
            }
            Err(e @ PlotError::NoFont { .. }) => eprintln!("skipped, no font: {e}"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn long_plans_are_bucketed() {
        let rows = rows(40_000);
        let chart = Chart::new(&rows, "t", 25.0, 5);
        assert!(chart.buckets.len() <= (WIDTH - Y_LABELS - 2 * MARGIN) as usize);
        assert_eq!(chart.start, rows[0].timestamp as f64);
        assert_eq!(chart.end, (rows[39_999].timestamp + 60) as f64);
        let max = rows.iter().map(|r| r.value).fold(0.0, f64::max);
        assert_eq!(
            chart.buckets.iter().map(|b| b.load).fold(0.0, f64::max),
            max
        );
        let path = out("long.svg");
        write_plot(&path, &rows, "long", 25.0, 5).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() < 1_000_000);
    }

    #[test]
    fn errors() {
        let rows = rows(20);
        let e = write_plot(Path::new("plan.jpg"), &rows, "t", 25.0, 5).unwrap_err();
        assert!(matches!(e, PlotError::UnknownFormat { .. }), "{e}");
        assert!(e.to_string().contains(".svg or .png"), "{e}");
        assert!(matches!(
            write_plot(Path::new("plan"), &rows, "t", 25.0, 5),
            Err(PlotError::UnknownFormat { .. })
        ));
        assert_eq!(
            write_plot(Path::new("p.svg"), &[], "t", 25.0, 5),
            Err(PlotError::Empty)
        );
        assert!(matches!(
            write_plot(Path::new("p.svg"), &rows, "t", 0.0, 5),
            Err(PlotError::BadCapacity(_))
        ));
        let e = write_plot(Path::new("/nonexistent-dir/p.svg"), &rows, "t", 25.0, 5).unwrap_err();
        assert!(matches!(e, PlotError::Draw { .. }), "{e}");
    }

    #[test]
    fn shortfalls_follow_evaluation_md() {
        // Load 30 with capacity 25: two replicas needed. Desired goes 1 -> 2 at step 2;
        // with startup 2 the second replica serves from step 4.
        let mut rows = rows(8);
        for (i, r) in rows.iter_mut().enumerate() {
            r.value = 30.0;
            r.desired = if i < 2 { 1 } else { 2 };
        }
        let s = shortfalls(&rows, |r| r.desired, 25.0, 2);
        let short: Vec<bool> = s.iter().map(|(_, s)| *s).collect();
        assert_eq!(short, [true, true, true, true, false, false, false, false]);
    }
}
