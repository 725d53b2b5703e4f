//! The plots of a matrix report, drawn with plotters in SVG and PNG.

use super::*;

/// One figure, rendered once per backend.
pub(super) enum Plot<'a> {
    Tradeoff(&'a ProfileRun),
    Visibility(&'a ProfileRun),
    Cdf(&'a ProfileRun),
}

impl Plot<'_> {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Plot::Tradeoff(_) => "tradeoff",
            Plot::Visibility(_) => "visibility",
            Plot::Cdf(_) => "latency-cdf",
        }
    }

    pub(super) fn size(&self) -> (u32, u32) {
        match self {
            Plot::Visibility(p) => {
                let (rows, cols) = grid_keys(p);
                let w = (cols.len() as u32).saturating_mul(480).clamp(PLOT_SIZE.0, 4000);
                let h = (rows.len() as u32)
                    .saturating_mul(360)
                    .saturating_add(70)
                    .clamp(PLOT_SIZE.1, 4000);
                (w, h)
            }
            _ => PLOT_SIZE,
        }
    }
}

/// Writes `stem.svg` and `stem.png` into `dir`.
pub(super) fn render(dir: &Path, stem: &str, plot: &Plot) -> Result<Vec<PathBuf>> {
    let size = plot.size();
    let svg = dir.join(format!("{stem}.svg"));
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        draw_plot(&root, plot).with_context(|| format!("drawing {}", svg.display()))?;
        root.present().with_context(|| format!("writing {}", svg.display()))?;
    }
    let png = dir.join(format!("{stem}.png"));
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw_plot(&root, plot).with_context(|| format!("drawing {}", png.display()))?;
        root.present().with_context(|| format!("writing {}", png.display()))?;
    }
    Ok(vec![svg, png])
}

pub(super) fn draw_plot<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, plot: &Plot) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    match plot {
        Plot::Tradeoff(p) => draw_tradeoff(root, p),
        Plot::Visibility(p) => draw_visibility(root, p),
        Plot::Cdf(p) => draw_cdf(root, p),
    }
}

/// Tableau 10: distinguishable colours for one line per setting.
pub(super) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
pub(super) const READ_COLOUR: RGBColor = RGBColor(31, 119, 180);
pub(super) const WRITE_COLOUR: RGBColor = RGBColor(214, 39, 40);
pub(super) const MEASURED_COLOUR: RGBColor = RGBColor(31, 119, 180);
pub(super) const PREDICTED_COLOUR: RGBColor = RGBColor(255, 127, 14);

pub(super) fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Scale {
    Linear,
    Log10,
    /// log10(1 + v): a log-like axis that still shows v = 0.
    Log1p,
}

/// One axis: how data maps onto it, its range in mapped units and its ticks.
///
/// It is its own plotters coordinate (linear in mapped units) because plotters' key-point
/// combinator over `f64` ranges cannot take a label formatter.
#[derive(Clone)]
pub(super) struct Axis {
    scale: Scale,
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    minor: Vec<f64>,
}

impl Axis {
    /// A linear axis over [lo, hi] with "nice" ticks; degenerate or non-finite input is widened.
    fn linear(lo: f64, hi: f64) -> Axis {
        let (lo, hi) = sane_range(lo, hi);
        let step = nice_step((hi - lo) / 8.0);
        let mut ticks = Vec::new();
        let first = (lo / step).ceil();
        let mut k = first;
        while k * step <= hi + step * 1e-9 && ticks.len() < 50 {
            ticks.push(k * step);
            k += 1.0;
        }
        Axis {
            scale: Scale::Linear,
            lo,
            hi,
            ticks,
            minor: Vec::new(),
        }
    }

    /// A log10 axis covering [min, max] (both must be positive; otherwise falls back to 1..10).
    fn log(min: f64, max: f64) -> Axis {
        let (min, max) = if min.is_finite() && max.is_finite() && min > 0.0 && max >= min {
            (min, max)
        } else {
            (1.0, 10.0)
        };
        let (lmin, lmax) = (min.log10(), max.log10());
        let pad = if lmax - lmin < 1e-9 { 0.3 } else { (lmax - lmin) * 0.05 };
        let (lo, hi) = (lmin - pad, lmax + pad);
        let (emin, emax) = (lo.floor() as i32, hi.ceil() as i32);
        let in_range = |v: f64| v.log10() >= lo && v.log10() <= hi;
        let decade_values = |mantissas: &[f64]| -> Vec<f64> {
            (emin..=emax)
                .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
                .filter(|v| in_range(*v))
                .collect()
        };
        let mut ticks = Vec::new();
        for set in [&[1.0, 2.0, 3.0, 5.0, 7.0][..], &[1.0, 2.0, 5.0], &[1.0, 3.0], &[1.0]] {
            ticks = decade_values(set);
            if ticks.len() <= 9 {
                break;
            }
        }
        if ticks.len() > 12 {
            let every = ticks.len().div_ceil(10);
            ticks = ticks.into_iter().step_by(every).collect();
        }
        let minor = if emax - emin <= 8 {
            decade_values(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
        } else {
            Vec::new()
        };
        let map = |v: Vec<f64>| v.into_iter().map(f64::log10).collect();
        Axis {
            scale: Scale::Log10,
            lo,
            hi,
            ticks: map(ticks),
            minor: map(minor),
        }
    }

    /// A log10(1 + t) axis whose ticks are the given (probed) values, thinned so labels do not
    /// collide.
    fn log1p(values: &[f64]) -> Axis {
        let tmax = values.iter().copied().fold(0.0, f64::max);
        let top = (1.0 + tmax).log10().max(0.3);
        let (lo, hi) = (-0.03 * top, top * 1.03);
        let mut ticks: Vec<f64> = Vec::new();
        let gap = (hi - lo) / 20.0;
        for v in values {
            let x = (1.0 + v).log10();
            match ticks.last() {
                Some(last) if x - last < gap => {}
                _ => ticks.push(x),
            }
        }
        Axis {
            scale: Scale::Log1p,
            lo,
            hi,
            ticks,
            minor: Vec::new(),
        }
    }

    fn map(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Linear => v,
            Scale::Log10 => v.log10(),
            Scale::Log1p => (1.0 + v).log10(),
        }
    }

    fn unmap(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Linear => v,
            Scale::Log10 => 10f64.powf(v),
            Scale::Log1p => 10f64.powf(v) - 1.0,
        }
    }

    /// Whether a data value can be drawn on this axis.
    fn accepts(&self, v: f64) -> bool {
        match self.scale {
            Scale::Linear => v.is_finite(),
            Scale::Log10 => v.is_finite() && v > 0.0,
            Scale::Log1p => v.is_finite() && v >= 0.0,
        }
    }

    fn label(&self, v: f64) -> String {
        fmt_num(self.unmap(v))
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let frac = (value - self.lo) / (self.hi - self.lo);
        if !frac.is_finite() {
            return limit.0;
        }
        let px = f64::from(limit.0) + f64::from(limit.1 - limit.0) * frac;
        px.clamp(-1e7, 1e7).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

pub(super) fn sane_range(lo: f64, hi: f64) -> (f64, f64) {
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    if hi - lo > lo.abs().max(hi.abs()) * 1e-9 && hi - lo > 1e-12 {
        (lo, hi)
    } else {
        let pad = if lo.abs() > 1e-12 { lo.abs() * 0.1 } else { 1.0 };
        (lo - pad, hi + pad)
    }
}

pub(super) fn nice_step(raw: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let frac = raw / mag;
    let nice = if frac <= 1.0 {
        1.0
    } else if frac <= 2.0 {
        2.0
    } else if frac <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<Axis, Axis>>;

/// Text sizes for one chart.
pub(super) struct Fonts {
    caption: u32,
    label: u32,
    desc: u32,
}

pub(super) const BIG: Fonts = Fonts {
    caption: 22,
    label: 15,
    desc: 16,
};
pub(super) const SMALL: Fonts = Fonts {
    caption: 17,
    label: 12,
    desc: 13,
};

/// Builds a chart with mesh, tick labels and axis descriptions on `area`.
pub(super) fn chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    x: &Axis,
    y: &Axis,
    (x_desc, y_desc): (&str, &str),
    fonts: &Fonts,
) -> Result<Chart<'a, DB>>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .caption(caption, ("sans-serif", fonts.caption))
        .x_label_area_size(fonts.label * 3 + 6)
        .y_label_area_size(fonts.label * 4 + 12)
        .build_cartesian_2d(x.clone(), y.clone())?;
    let x_fmt = |v: &f64| x.label(*v);
    let y_fmt = |v: &f64| y.label(*v);
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(("sans-serif", fonts.label))
        .axis_desc_style(("sans-serif", fonts.desc))
        .bold_line_style(RGBColor(200, 200, 200))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    Ok(chart)
}

pub(super) fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    position: SeriesLabelPosition,
    size: u32,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .margin(8)
        .label_font(("sans-serif", size))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()?;
    Ok(())
}

/// Writes a centred note (e.g. "no data") on the plotting area of a chart.
pub(super) fn note_on<'a, DB: DrawingBackend + 'a>(chart: &Chart<'a, DB>, text: &str, size: u32) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let area = chart.plotting_area().strip_coord_spec();
    let (w, h) = area.dim_in_pixel();
    let style = TextStyle::from(("sans-serif", size).into_font())
        .color(&RGBColor(110, 110, 110))
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(text.to_string(), ((w / 2) as i32, (h / 2) as i32), style))?;
    Ok(())
}

pub(super) fn titled<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str) -> Result<DrawingArea<DB, Shift>>
where
    DB::ErrorType: 'static,
{
    Ok(root.titled(title, ("sans-serif", 26))?)
}

/// p99.9 latency against P(stale) at the smallest t, one point per setting.
pub(super) fn draw_tradeoff<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, p: &ProfileRun) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let multi = multi_n(p);
    let t0 = profile_t0(p).map_or_else(|| "smallest t".to_string(), |t| format!("t = {} ms", fmt_num(t)));
    let body = titled(root, &format!("Latency vs staleness, profile {}", p.profile))?;

    // (read?, predicted?) -> points (latency ms, P(stale), label)
    let mut groups: [Vec<(f64, f64, String)>; 4] = Default::default();
    for c in sorted_cells(p) {
        let (m, pr) = fresh_t0(c);
        let label = setting_label(c, multi);
        for (op, lat) in [(0, &c.get), (1, &c.put)] {
            let x = us_to_ms(lat.p999_us);
            if !(x.is_finite() && x > 0.0) {
                continue;
            }
            for (kind, fresh) in [(0, m), (1, pr)] {
                if let Some(f) = usable(fresh) {
                    groups[op * 2 + kind].push((x, (1.0 - f).clamp(0.0, 1.0), label.clone()));
                }
            }
        }
    }
    let all = groups.iter().flatten();
    let xmin = all.clone().map(|g| g.0).fold(f64::INFINITY, f64::min);
    let xmax = all.clone().map(|g| g.0).fold(f64::NEG_INFINITY, f64::max);
    let ymax = all.map(|g| g.1).fold(0.0, f64::max);
    // Extra room on the right keeps the labels of the rightmost points inside the chart.
    let x_axis = if xmin.is_finite() && xmax / xmin > 10.0 {
        Axis::log(xmin, xmax * (xmax / xmin).powf(0.15))
    } else if xmin.is_finite() {
        let pad = ((xmax - xmin) * 0.08).max(xmax * 0.05);
        Axis::linear((xmin - pad).max(0.0), xmax + 2.5 * pad)
    } else {
        Axis::log(1.0, 100.0)
    };
    let mut y_axis = Axis::linear(0.0, (ymax * 1.15).max(0.01));
    // Room below zero so markers at P(stale) = 0 are not cut in half.
    y_axis.lo = -0.025 * y_axis.hi;
    let x_desc = if x_axis.scale == Scale::Log10 {
        "p99.9 latency (ms, log scale)"
    } else {
        "p99.9 latency (ms)"
    };
    let y_desc = format!("P(stale read) at {t0} = 1 - P(fresh)");
    let mut chart = chart(
        &body,
        "one point per (r, w) setting; lower left is better",
        &x_axis,
        &y_axis,
        (x_desc, &y_desc),
        &BIG,
    )?;

    let names = [
        "read p99.9, measured staleness",
        "read p99.9, predicted staleness (PBS)",
        "write p99.9, measured staleness",
        "write p99.9, predicted staleness (PBS)",
    ];
    let mut any = false;
    for (i, points) in groups.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        any = true;
        let read = i < 2;
        let predicted = i % 2 == 1;
        let col = if read { READ_COLOUR } else { WRITE_COLOUR };
        let style = if predicted { col.stroke_width(2) } else { col.filled() };
        // Measured points carry the setting label: left of read markers, right of write markers,
        // so a read and a write point at the same spot stay readable.
        let (anchor, dx) = if read { (HPos::Right, -10) } else { (HPos::Left, 10) };
        let label_style = TextStyle::from(("sans-serif", 14).into_font())
            .color(&col)
            .pos(Pos::new(anchor, VPos::Center));
        // Points that would sit on top of each other share one marker and one label.
        let mut merged: Vec<(f64, f64, String)> = Vec::new();
        for (x, y, label) in points {
            let (mx, my) = (x_axis.map(*x), *y);
            let close = |(ox, oy, _): &&mut (f64, f64, String)| {
                (ox - mx).abs() <= (x_axis.hi - x_axis.lo) * 0.004 && (oy - my).abs() <= (y_axis.hi - y_axis.lo) * 0.004
            };
            match merged.iter_mut().find(|m| close(m)) {
                Some(m) => {
                    m.2.push_str(", ");
                    m.2.push_str(label);
                }
                None => merged.push((mx, my, label.clone())),
            }
        }
        chart
            .draw_series(merged.into_iter().map(|(x, y, label)| {
                let text = if predicted { String::new() } else { label };
                EmptyElement::at((x, y)) + marker(read, (0, 0), style) + Text::new(text, (dx, 0), label_style.clone())
            }))?
            .label(names[i])
            .legend(move |(x, y)| marker(read, (x + 8, y), style));
    }
    if any {
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight, 15)?;
    } else {
        note_on(&chart, "no latency or staleness data for this profile", 22)?;
    }
    Ok(())
}

/// A circle (reads) or triangle (writes) marker; hollow unless `style` is filled. Plotters'
/// own `TriangleMarker` is always filled, so the triangle is drawn as a path.
pub(super) fn marker<DB: DrawingBackend>(
    read: bool,
    at: (i32, i32),
    style: ShapeStyle,
) -> DynElement<'static, DB, (i32, i32)> {
    if read {
        Circle::new(at, 6, style).into_dyn()
    } else {
        let (x, y) = at;
        let corners = [(x, y - 8), (x + 7, y + 5), (x - 7, y + 5)];
        if style.filled {
            Polygon::new(corners.to_vec(), style).into_dyn()
        } else {
            PathElement::new(vec![corners[0], corners[1], corners[2], corners[0]], style).into_dyn()
        }
    }
}

/// Row keys (n, w) and column keys r of the visibility grid.
pub(super) fn grid_keys(p: &ProfileRun) -> (Vec<(u8, u8)>, Vec<u8>) {
    let rows: BTreeSet<(u8, u8)> = p.cells.iter().map(|c| (c.n, c.w)).collect();
    let cols: BTreeSet<u8> = p.cells.iter().map(|c| c.r).collect();
    (rows.into_iter().collect(), cols.into_iter().collect())
}

/// A grid of t-visibility panels, rows = w, columns = r.
pub(super) fn draw_visibility<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, p: &ProfileRun) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let multi = multi_n(p);
    let body = titled(
        root,
        &format!(
            "t-visibility, profile {}: P(read returns the acked write or newer) vs t",
            p.profile
        ),
    )?;
    let (rows, cols) = grid_keys(p);
    let ts: Vec<f64> = {
        let mut ts: Vec<f64> = p
            .cells
            .iter()
            .flat_map(|c| c.visibility.iter().map(|v| v.t_ms))
            .filter(|t| t.is_finite() && *t >= 0.0)
            .collect();
        ts.sort_by(f64::total_cmp);
        ts.dedup();
        ts
    };
    let x_axis = Axis::log1p(&ts);
    let lowest = p
        .cells
        .iter()
        .flat_map(|c| {
            c.visibility
                .iter()
                .flat_map(|v| [usable(v.measured), usable(v.predicted)])
        })
        .flatten()
        .fold(1.0, f64::min)
        .clamp(0.0, 1.0);
    let y_lo = (lowest.min(0.5) * 20.0).floor() / 20.0;
    let mut y_axis = Axis::linear(y_lo, 1.0);
    y_axis.hi = 1.0 + (1.0 - y_lo) * 0.015;

    if rows.is_empty() || cols.is_empty() {
        let c = chart(
            &body,
            "no settings",
            &x_axis,
            &y_axis,
            ("t after write ack (ms)", "P(fresh)"),
            &BIG,
        )?;
        note_on(&c, "no settings were measured under this profile", 22)?;
        return Ok(());
    }

    let panels = body.split_evenly((rows.len(), cols.len()));
    for c in sorted_cells(p) {
        let (Some(ri), Some(ci)) = (
            rows.iter().position(|k| *k == (c.n, c.w)),
            cols.iter().position(|r| *r == c.r),
        ) else {
            continue;
        };
        let Some(area) = panels.get(ri * cols.len() + ci) else {
            continue;
        };
        let caption = format!(
            "{}{}",
            setting_label(c, multi),
            if strict_quorum(c) { "  (r+w>n)" } else { "  (r+w<=n)" }
        );
        let mut chart = chart(
            area,
            &caption,
            &x_axis,
            &y_axis,
            ("t after write ack (ms, log(1+t) axis)", "P(fresh)"),
            &SMALL,
        )?;
        let mut points: Vec<&VisibilityPoint> = c.visibility.iter().filter(|v| x_axis.accepts(v.t_ms)).collect();
        points.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        let series = |f: fn(&VisibilityPoint) -> Option<f64>| -> Vec<(f64, f64)> {
            points
                .iter()
                .filter_map(|v| usable(f(v)).map(|y| (x_axis.map(v.t_ms), y.clamp(0.0, 1.0))))
                .collect()
        };
        let measured = series(|v| v.measured);
        let predicted = series(|v| v.predicted);
        if !predicted.is_empty() {
            let style = PREDICTED_COLOUR.stroke_width(2);
            chart
                .draw_series(DashedLineSeries::new(predicted.iter().copied(), 7, 5, style))?
                .label("predicted (PBS)")
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (7, 0)], style)
                        + PathElement::new(vec![(11, 0), (18, 0)], style)
                });
            chart.draw_series(PointSeries::of_element(
                predicted.iter().copied(),
                3,
                style,
                &|c, s, st| EmptyElement::at(c) + Rectangle::new([(-s, -s), (s, s)], st),
            ))?;
        }
        if !measured.is_empty() {
            let style = MEASURED_COLOUR.stroke_width(2);
            chart
                .draw_series(LineSeries::new(measured.iter().copied(), style))?
                .label("measured")
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (18, 0)], style)
                        + Circle::new((9, 0), 3, style.filled())
                });
            chart.draw_series(PointSeries::<_, _, Circle<_, _>, _>::new(
                measured.iter().copied(),
                3,
                MEASURED_COLOUR.filled(),
            ))?;
        }
        if measured.is_empty() && predicted.is_empty() {
            note_on(&chart, "no t-visibility data", 15)?;
        } else {
            draw_legend(&mut chart, SeriesLabelPosition::LowerRight, 12)?;
        }
    }
    Ok(())
}

/// One setting's line in a latency CDF panel.
pub(super) struct CdfLine {
    colour: RGBColor,
    label: String,
    points: Vec<(f64, f64)>,
}

/// Get and put latency CDFs, one line per setting.
pub(super) fn draw_cdf<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, p: &ProfileRun) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let multi = multi_n(p);
    let body = titled(root, &format!("Latency CDF, profile {}", p.profile))?;
    let halves = body.split_evenly((1, 2));
    let cells = sorted_cells(p);
    for (area, (name, pick)) in halves.iter().zip([
        ("get", (|c: &Cell| &c.get_cdf) as fn(&Cell) -> &Vec<(f64, f64)>),
        ("put", |c: &Cell| &c.put_cdf),
    ]) {
        // Zero latencies cannot go on a log axis; they are left out, as are non-finite points.
        let lines: Vec<CdfLine> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| CdfLine {
                colour: colour(i),
                label: setting_label(c, multi),
                points: pick(c)
                    .iter()
                    .filter(|(x, y)| x.is_finite() && *x > 0.0 && y.is_finite())
                    .map(|(x, y)| (*x, y.clamp(0.0, 1.0)))
                    .collect(),
            })
            .filter(|l| !l.points.is_empty())
            .collect();
        let xs = lines.iter().flat_map(|l| l.points.iter().map(|pt| pt.0));
        let xmin = xs.clone().fold(f64::INFINITY, f64::min);
        let xmax = xs.fold(f64::NEG_INFINITY, f64::max);
        let x_axis = Axis::log(xmin, xmax);
        let mut y_axis = Axis::linear(0.0, 1.0);
        (y_axis.lo, y_axis.hi) = (-0.01, 1.01);
        let mut chart = chart(
            area,
            &format!("{name} latency"),
            &x_axis,
            &y_axis,
            ("latency (ms, log scale)", "cumulative fraction of operations"),
            &BIG,
        )?;
        for line in &lines {
            let style = line.colour.stroke_width(2);
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().map(|(x, y)| (x_axis.map(*x), *y)),
                    style,
                ))?
                .label(line.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        if lines.is_empty() {
            note_on(&chart, &format!("no {name} latency CDF recorded"), 20)?;
        } else {
            draw_legend(&mut chart, SeriesLabelPosition::LowerRight, 14)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_have_ticks_even_for_degenerate_ranges() {
        let log = Axis::log(0.3, 800.0);
        assert!(!log.ticks.is_empty() && log.ticks.len() <= 12);
        let lin = Axis::linear(5.0, 5.0);
        assert!(lin.lo < lin.hi && !lin.ticks.is_empty());
    }
}
