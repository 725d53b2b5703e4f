//! The report that `shoal bench` leaves behind after running a consistency matrix.
//!
//! A matrix run measures every (n, r, w) setting under one or more injected latency profiles
//! and records, per setting, throughput, get/put latency, and the staleness Shoal's users can
//! expect from that setting. Staleness is reported the way Bailis et al. define it in
//! *Probabilistically Bounded Staleness for Practical Partial Quorums* (PBS, VLDB 2012):
//!
//! * **t-visibility**: the probability that a read starting `t` ms after a write was
//!   acknowledged returns that write or a newer one;
//! * **k-staleness**: the probability that a read returns one of the last `k` versions.
//!
//! Each point carries what Shoal measured with probe reads and, where the bench made one, the
//! prediction of the PBS WARS model (write, ack, read and response legs; the legs measured in
//! each setting are part of the report).
//!
//! [`write_all`] turns a [`MatrixReport`] into a directory a user can open, share and diff:
//!
//! | file | content |
//! | --- | --- |
//! | `report.json` | the whole [`MatrixReport`], so later tooling can re-render it |
//! | `matrix.csv` | one row per (profile, setting): throughput, latency, P(fresh) at the smallest t, mean WARS legs |
//! | `visibility.csv` | every t-visibility point |
//! | `k_staleness.csv` | every k-staleness point |
//! | `plots/tradeoff-P.{svg,png}` | p99.9 latency against staleness, one point per setting |
//! | `plots/visibility-P.{svg,png}` | measured and predicted t-visibility, one panel per (r, w) |
//! | `plots/latency-cdf-P.{svg,png}` | get and put latency CDFs, one line per setting |
//! | `report.md` | the tables, the embedded plots and a short computed reading of them |
//!
//! [`summary_table`] prints the same headline numbers for the terminal.
//!
//! Plots are drawn with `plotters` using the DejaVu Sans font that ships inside this crate
//! (`assets/DejaVuSans.ttf`, license in `assets/DejaVuSans-LICENSE`), so rendering needs no
//! system font libraries. Nothing here panics on odd data: missing measurements or
//! predictions show up as gaps in plots, empty CSV fields and "–" in tables.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};

mod csv;
mod markdown;
mod plots;
#[cfg(test)]
mod tests;

use csv::{k_staleness_csv, matrix_csv, visibility_csv, write_file};
use markdown::markdown;
use plots::{render, Plot};

/// Everything one `shoal bench` matrix run produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MatrixReport {
    /// What was run, e.g. "3 nodes, YCSB A, uniform keys, 1024-byte values".
    pub title: String,
    /// The command line that produced the run, shown in `report.md`.
    pub command: String,
    /// When the run started, in seconds since the Unix epoch.
    pub unix_time: u64,
    /// One entry per latency profile the matrix ran under.
    pub profiles: Vec<ProfileRun>,
}

/// The matrix as measured under one injected latency profile.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfileRun {
    /// Latency profile name: "lan", "lnkd-ssd", "lnkd-disk", "ymmr", "wan" or a file name.
    pub profile: String,
    /// One line describing the injected latencies.
    pub description: String,
    /// Number of Shoal nodes in the cluster.
    pub nodes: usize,
    /// One cell per (n, r, w) setting.
    pub cells: Vec<Cell>,
}

/// The measurements for one (n, r, w) setting.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    /// Replication factor.
    pub n: u8,
    /// Read quorum.
    pub r: u8,
    /// Write quorum.
    pub w: u8,
    /// Operations completed.
    pub ops: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Wall-clock length of the measurement, in seconds.
    pub elapsed_s: f64,
    /// Completed operations per second.
    pub throughput: f64,
    /// Get latency.
    pub get: Latency,
    /// Put latency.
    pub put: Latency,
    /// Latency CDF points (latency in ms, cumulative fraction 0..=1), ascending; may be empty.
    pub get_cdf: Vec<(f64, f64)>,
    /// Latency CDF points (latency in ms, cumulative fraction 0..=1), ascending; may be empty.
    pub put_cdf: Vec<(f64, f64)>,
    /// t-visibility: P(a read starting t ms after a write was acknowledged returns it or newer).
    pub visibility: Vec<VisibilityPoint>,
    /// k-staleness at t = 0: P(a read returns one of the last k versions), k = 1, 2, 3, ...
    pub k_staleness: Vec<KPoint>,
    /// Mean and p99 of each WARS leg measured in this cell, in ms.
    pub legs: LegSummary,
}

/// Latency percentiles of one operation type, in microseconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// One point of a t-visibility curve (PBS, Bailis et al., VLDB 2012).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VisibilityPoint {
    /// Delay between the write's acknowledgement and the start of the read, in ms.
    pub t_ms: f64,
    /// Reads issued at this delay.
    pub probes: u64,
    /// Of those, reads that returned the acknowledged write or newer.
    pub fresh: u64,
    /// `fresh / probes`; `None` when there were no probes.
    pub measured: Option<f64>,
    /// The WARS model's prediction; `None` when no prediction was made.
    pub predicted: Option<f64>,
}

/// One point of k-staleness at t = 0 (PBS, Bailis et al., VLDB 2012).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KPoint {
    /// How many of the latest versions count as acceptable.
    pub k: u32,
    /// Reads issued.
    pub probes: u64,
    /// Fraction of reads that returned one of the last `k` versions; `None` without probes.
    pub measured: Option<f64>,
    /// The WARS model's prediction; `None` when no prediction was made.
    pub predicted: Option<f64>,
}

/// The four WARS legs of PBS: W (coordinator to replica write), A (write ack back),
/// R (read request to replica) and S (read response back).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LegSummary {
    pub w: LegStat,
    pub a: LegStat,
    pub r: LegStat,
    pub s: LegStat,
}

/// Distribution summary of one WARS leg, in ms.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LegStat {
    pub samples: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The P(fresh) level the report treats as "as good as strongly consistent".
const FRESH_TARGET: f64 = 0.999;
/// Shown wherever a value is missing.
const DASH: &str = "–";
/// Size of the single-chart plots, in pixels.
const PLOT_SIZE: (u32, u32) = (1200, 800);

static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Registers the bundled DejaVu Sans as plotters' "sans-serif" family, once per process.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font("sans-serif", FontStyle::Normal, FONT_BYTES).is_ok());
    if ok {
        Ok(())
    } else {
        bail!("the bundled DejaVu Sans font could not be parsed")
    }
}

/// Writes the full report for `report` into `dir` (created if needed) and returns every path
/// written: `report.json`, `matrix.csv`, `visibility.csv`, `k_staleness.csv`, three plots per
/// profile in SVG and PNG under `plots/`, and `report.md`.
pub fn write_all(report: &MatrixReport, dir: &Path) -> Result<Vec<PathBuf>> {
    ensure_font()?;
    let plots_dir = dir.join("plots");
    fs::create_dir_all(&plots_dir).with_context(|| format!("creating report directory {}", plots_dir.display()))?;

    let mut written = Vec::new();
    let json = serde_json::to_string_pretty(report).context("serialising the bench report to JSON")?;
    write_file(&dir.join("report.json"), &json, &mut written)?;
    write_file(&dir.join("matrix.csv"), &matrix_csv(report), &mut written)?;
    write_file(&dir.join("visibility.csv"), &visibility_csv(report), &mut written)?;
    write_file(&dir.join("k_staleness.csv"), &k_staleness_csv(report), &mut written)?;

    let slugs = profile_slugs(report);
    for (profile, slug) in report.profiles.iter().zip(&slugs) {
        for plot in [Plot::Tradeoff(profile), Plot::Visibility(profile), Plot::Cdf(profile)] {
            let stem = format!("{}-{slug}", plot.kind());
            written.extend(render(&plots_dir, &stem, &plot)?);
        }
    }

    write_file(&dir.join("report.md"), &markdown(report, &slugs), &mut written)?;
    Ok(written)
}

/// A fixed-width table per profile for the terminal: setting, throughput, get and put p99 and
/// p99.9, measured and predicted P(fresh) at the smallest probed t (normally 0 ms), errors.
pub fn summary_table(report: &MatrixReport) -> String {
    let mut out = String::new();
    for p in &report.profiles {
        let multi = multi_n(p);
        let cells = sorted_cells(p);
        let sw = cells
            .iter()
            .map(|c| setting_label(c, multi).chars().count())
            .max()
            .unwrap_or(0)
            .max(7);
        if p.description.is_empty() {
            let _ = writeln!(out, "{} ({} nodes)", p.profile, p.nodes);
        } else {
            let _ = writeln!(out, "{} ({} nodes): {}", p.profile, p.nodes, p.description);
        }
        let _ = writeln!(
            out,
            "{:<sw$} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8}",
            "setting", "ops/s", "get p99", "get p99.9", "put p99", "put p99.9", "fresh meas", "fresh pred", "errors"
        );
        let _ = writeln!(out, "{}", "-".repeat(sw + 82));
        for c in &cells {
            let (m, pr) = fresh_t0(c);
            let _ = writeln!(
                out,
                "{:<sw$} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8}",
                setting_label(c, multi),
                fmt_throughput(c.throughput),
                fmt_lat(&c.get, c.get.p99_us),
                fmt_lat(&c.get, c.get.p999_us),
                fmt_lat(&c.put, c.put.p99_us),
                fmt_lat(&c.put, c.put.p999_us),
                fmt_prob(m),
                fmt_prob(pr),
                c.errors
            );
        }
        if cells.is_empty() {
            let _ = writeln!(out, "(no settings measured)");
        }
        let t0 = profile_t0(p).map_or_else(
            || "the smallest probed t".to_string(),
            |t| format!("t = {} ms", fmt_num(t)),
        );
        let _ = writeln!(
            out,
            "latencies in ms; fresh = P(read returns the last acked write or newer) at {t0}\n"
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Derived quantities
// ---------------------------------------------------------------------------------------------

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// A probability that is usable: present and finite.
fn usable(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

/// The t-visibility point with the smallest t, which the bench normally probes at t = 0.
fn first_visibility(cell: &Cell) -> Option<&VisibilityPoint> {
    cell.visibility
        .iter()
        .filter(|p| p.t_ms.is_finite())
        .min_by(|a, b| a.t_ms.total_cmp(&b.t_ms))
}

/// Measured and predicted P(fresh) at the smallest probed t.
fn fresh_t0(cell: &Cell) -> (Option<f64>, Option<f64>) {
    first_visibility(cell).map_or((None, None), |p| (usable(p.measured), usable(p.predicted)))
}

/// The smallest probed t across a profile.
fn profile_t0(p: &ProfileRun) -> Option<f64> {
    p.cells
        .iter()
        .filter_map(first_visibility)
        .map(|v| v.t_ms)
        .min_by(f64::total_cmp)
}

/// The first probed t at which the measured P(fresh) reaches `target`.
fn first_reaching(cell: &Cell, target: f64) -> Option<&VisibilityPoint> {
    let mut points: Vec<&VisibilityPoint> = cell.visibility.iter().filter(|p| p.t_ms.is_finite()).collect();
    points.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
    points
        .into_iter()
        .find(|p| usable(p.measured).is_some_and(|m| m >= target))
}

/// The 95% Wilson score interval of a proportion observed as `hits` of `n`; `None` for n = 0.
/// Wilson rather than the normal approximation because the interesting proportions sit next
/// to 0 and 1, where a few hundred probes give the normal interval a width of zero.
fn wilson95(hits: u64, n: u64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    const Z: f64 = 1.959_963_984_540_054;
    let all = hits >= n;
    let (n, p) = (n as f64, hits.min(n) as f64 / n as f64);
    let z2 = Z * Z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    // At 0 of n and n of n the closed form lands on 0 and 1 up to rounding; pin them, so a
    // prediction of exactly 1 is inside the interval of 300 fresh reads out of 300.
    let lo = if hits == 0 { 0.0 } else { (centre - half).max(0.0) };
    let hi = if all { 1.0 } else { (centre + half).min(1.0) };
    Some((lo, hi))
}

/// Whether a point's prediction lies inside the 95% interval of its measurement; `None`
/// without both.
fn prediction_within_interval(v: &VisibilityPoint) -> Option<bool> {
    let predicted = usable(v.predicted)?;
    let (lo, hi) = wilson95(v.fresh, v.probes)?;
    Some((lo..=hi).contains(&predicted))
}

/// Whether every read quorum must overlap every write quorum.
fn strict_quorum(c: &Cell) -> bool {
    u16::from(c.r) + u16::from(c.w) > u16::from(c.n)
}

fn multi_n(p: &ProfileRun) -> bool {
    p.cells.iter().map(|c| c.n).collect::<BTreeSet<_>>().len() > 1
}

fn setting_label(c: &Cell, with_n: bool) -> String {
    if with_n {
        format!("n{} r{} w{}", c.n, c.r, c.w)
    } else {
        format!("r{} w{}", c.r, c.w)
    }
}

/// Cells ordered by (n, r, w), which is also the colour order in the plots.
fn sorted_cells(p: &ProfileRun) -> Vec<&Cell> {
    let mut cells: Vec<&Cell> = p.cells.iter().collect();
    cells.sort_by_key(|c| (c.n, c.r, c.w));
    cells
}

/// File-name-safe, unique slugs for every profile, in order.
fn profile_slugs(report: &MatrixReport) -> Vec<String> {
    let mut used = BTreeSet::new();
    report
        .profiles
        .iter()
        .map(|p| {
            let base = slug(&p.profile);
            let mut candidate = base.clone();
            let mut i = 2;
            while !used.insert(candidate.clone()) {
                candidate = format!("{base}-{i}");
                i += 1;
            }
            candidate
        })
        .collect()
}

fn slug(name: &str) -> String {
    let mut out = String::new();
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            out.push(ch.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "profile".to_string()
    } else {
        trimmed.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

/// Milliseconds with precision that suits the magnitude.
fn fmt_ms(v: f64) -> String {
    if !v.is_finite() {
        DASH.to_string()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A latency percentile in ms, or a dash when no operations of that type were measured.
fn fmt_lat(lat: &Latency, us: u64) -> String {
    if lat.count == 0 && us == 0 {
        DASH.to_string()
    } else {
        fmt_ms(us_to_ms(us))
    }
}

fn fmt_prob(v: Option<f64>) -> String {
    usable(v).map_or_else(|| DASH.to_string(), |v| format!("{v:.4}"))
}

fn fmt_throughput(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        DASH.to_string()
    }
}

/// A short number for prose and tick labels: at most about three significant digits.
fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return DASH.to_string();
    }
    let a = v.abs();
    let s = if a < 1e-12 {
        return "0".to_string();
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 1e-4 {
        format!("{v:.6}")
    } else {
        return format!("{v:.1e}");
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

fn plural(n: usize, noun: &str) -> String {
    plural_u64(n as u64, noun)
}

fn plural_u64(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// "Y-m-d H:M:S UTC" from Unix seconds, without a date library.
fn utc_datetime(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
