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

static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

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

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

fn write_file(path: &Path, contents: &str, written: &mut Vec<PathBuf>) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    written.push(path.to_path_buf());
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_num(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}

fn csv_opt(v: Option<f64>) -> String {
    usable(v).map(csv_num).unwrap_or_default()
}

fn push_csv_row(out: &mut String, fields: &[String]) {
    out.push_str(&fields.join(","));
    out.push('\n');
}

fn matrix_csv(report: &MatrixReport) -> String {
    let mut out = String::from(
        "profile,n,r,w,ops,errors,throughput,get_p50_ms,get_p90_ms,get_p99_ms,get_p999_ms,\
         put_p50_ms,put_p90_ms,put_p99_ms,put_p999_ms,p_fresh_t0_measured,p_fresh_t0_predicted,\
         w_mean_ms,a_mean_ms,r_mean_ms,s_mean_ms\n",
    );
    for p in &report.profiles {
        for c in &p.cells {
            let (m, pr) = fresh_t0(c);
            let lat = |us: u64| csv_num(us_to_ms(us));
            push_csv_row(
                &mut out,
                &[
                    csv_field(&p.profile),
                    c.n.to_string(),
                    c.r.to_string(),
                    c.w.to_string(),
                    c.ops.to_string(),
                    c.errors.to_string(),
                    csv_num(c.throughput),
                    lat(c.get.p50_us),
                    lat(c.get.p90_us),
                    lat(c.get.p99_us),
                    lat(c.get.p999_us),
                    lat(c.put.p50_us),
                    lat(c.put.p90_us),
                    lat(c.put.p99_us),
                    lat(c.put.p999_us),
                    csv_opt(m),
                    csv_opt(pr),
                    csv_num(c.legs.w.mean_ms),
                    csv_num(c.legs.a.mean_ms),
                    csv_num(c.legs.r.mean_ms),
                    csv_num(c.legs.s.mean_ms),
                ],
            );
        }
    }
    out
}

fn visibility_csv(report: &MatrixReport) -> String {
    let mut out = String::from("profile,n,r,w,t_ms,probes,fresh,measured,predicted\n");
    for p in &report.profiles {
        for c in &p.cells {
            for v in &c.visibility {
                push_csv_row(
                    &mut out,
                    &[
                        csv_field(&p.profile),
                        c.n.to_string(),
                        c.r.to_string(),
                        c.w.to_string(),
                        csv_num(v.t_ms),
                        v.probes.to_string(),
                        v.fresh.to_string(),
                        csv_opt(v.measured),
                        csv_opt(v.predicted),
                    ],
                );
            }
        }
    }
    out
}

fn k_staleness_csv(report: &MatrixReport) -> String {
    let mut out = String::from("profile,n,r,w,k,probes,measured,predicted\n");
    for p in &report.profiles {
        for c in &p.cells {
            for k in &c.k_staleness {
                push_csv_row(
                    &mut out,
                    &[
                        csv_field(&p.profile),
                        c.n.to_string(),
                        c.r.to_string(),
                        c.w.to_string(),
                        k.k.to_string(),
                        k.probes.to_string(),
                        csv_opt(k.measured),
                        csv_opt(k.predicted),
                    ],
                );
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------------------------

/// Text that Markdown must show as written: punctuation with a meaning in Markdown (including
/// table pipes and HTML angle brackets) is backslash-escaped, and line breaks become spaces.
fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' => {
                out.push('\\');
                out.push(ch);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}

fn markdown(report: &MatrixReport, slugs: &[String]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Shoal bench: {}\n", md_text(&report.title));
    let longest_tick_run = report.command.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest_tick_run.max(2) + 1);
    let _ = writeln!(md, "Command:\n\n{fence}text\n{}\n{fence}\n", report.command);
    let _ = writeln!(
        md,
        "Started: {} (Unix time {}).\n",
        utc_datetime(report.unix_time),
        report.unix_time
    );
    let _ = writeln!(
        md,
        "P(fresh) is t-visibility as defined by Bailis et al., *Probabilistically Bounded Staleness \
         for Practical Partial Quorums* (PBS, VLDB 2012): the probability that a read starting t ms \
         after a write was acknowledged returns that write or a newer one. \"Measured\" comes from \
         probe reads against the running Shoal cluster; \"predicted\" is the PBS WARS model's \
         estimate, shown where the bench made one (the WARS leg latencies measured in each setting are \
         in report.json). Latencies are in ms.\n"
    );
    let _ = writeln!(
        md,
        "Raw data: [report.json](report.json), [matrix.csv](matrix.csv), \
         [visibility.csv](visibility.csv), [k_staleness.csv](k_staleness.csv).\n"
    );

    for (p, slug) in report.profiles.iter().zip(slugs) {
        profile_markdown(&mut md, p, slug);
    }
    md
}

fn profile_markdown(md: &mut String, p: &ProfileRun, slug: &str) {
    let multi = multi_n(p);
    let cells = sorted_cells(p);
    let t0 = profile_t0(p);
    let t0_text = t0.map_or_else(
        || "the smallest probed t".to_string(),
        |t| format!("t = {} ms", fmt_num(t)),
    );

    let _ = writeln!(md, "## Profile `{}`\n", p.profile.replace('`', "'"));
    if p.description.is_empty() {
        let _ = writeln!(md, "{} nodes.\n", p.nodes);
    } else {
        let _ = writeln!(md, "{} ({} nodes).\n", md_text(&p.description), p.nodes);
    }

    if cells.is_empty() {
        let _ = writeln!(md, "No settings were measured under this profile.\n");
    } else {
        let _ = writeln!(
            md,
            "| setting | r+w>n | ops/s | errors | get p50 | get p99 | get p99.9 | put p50 | put p99 | put p99.9 \
             | P(fresh) at {t0_text}, measured | predicted | first t with measured P(fresh) ≥ {FRESH_TARGET} |"
        );
        let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
        for c in &cells {
            let (m, pr) = fresh_t0(c);
            let reach = first_reaching(c, FRESH_TARGET).map_or_else(
                || {
                    if c.visibility.iter().any(|v| usable(v.measured).is_some()) {
                        "not reached".to_string()
                    } else {
                        DASH.to_string()
                    }
                },
                |v| format!("{} ms ({})", fmt_num(v.t_ms), fmt_prob(v.measured)),
            );
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                setting_label(c, multi),
                if strict_quorum(c) { "yes" } else { "no" },
                fmt_throughput(c.throughput),
                c.errors,
                fmt_lat(&c.get, c.get.p50_us),
                fmt_lat(&c.get, c.get.p99_us),
                fmt_lat(&c.get, c.get.p999_us),
                fmt_lat(&c.put, c.put.p50_us),
                fmt_lat(&c.put, c.put.p99_us),
                fmt_lat(&c.put, c.put.p999_us),
                fmt_prob(m),
                fmt_prob(pr),
                reach
            );
        }
        md.push('\n');
        k_staleness_markdown(md, &cells, multi);
    }

    let name = md_text(&p.profile);
    let _ = writeln!(
        md,
        "![Latency against staleness, profile {name}](plots/tradeoff-{slug}.png)\n"
    );
    let _ = writeln!(md, "![t-visibility, profile {name}](plots/visibility-{slug}.png)\n");
    let _ = writeln!(md, "![Latency CDF, profile {name}](plots/latency-cdf-{slug}.png)\n");
    let _ = writeln!(
        md,
        "SVG versions: [tradeoff](plots/tradeoff-{slug}.svg), [visibility](plots/visibility-{slug}.svg), \
         [latency CDF](plots/latency-cdf-{slug}.svg).\n"
    );

    let _ = writeln!(md, "### What this says\n");
    let _ = writeln!(md, "{}\n", findings(p, &cells, multi, &t0_text));
}

fn k_staleness_markdown(md: &mut String, cells: &[&Cell], multi: bool) {
    let ks: BTreeSet<u32> = cells.iter().flat_map(|c| c.k_staleness.iter().map(|k| k.k)).collect();
    if ks.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "k-staleness at t = 0 (PBS): P(a read returns one of the last k versions), measured / predicted.\n"
    );
    let mut header = String::from("| setting |");
    let mut rule = String::from("|---|");
    for k in &ks {
        let _ = write!(header, " k = {k} |");
        rule.push_str("--:|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for c in cells {
        let mut row = format!("| {} |", setting_label(c, multi));
        for k in &ks {
            let point = c.k_staleness.iter().find(|p| p.k == *k);
            let (m, pr) = point.map_or((None, None), |p| (p.measured, p.predicted));
            let _ = write!(row, " {} / {} |", fmt_prob(m), fmt_prob(pr));
        }
        let _ = writeln!(md, "{row}");
    }
    md.push('\n');
}

/// The computed "what this says" paragraph for one profile.
fn findings(p: &ProfileRun, cells: &[&Cell], multi: bool, t0_text: &str) -> String {
    let mut s = Vec::new();
    let measured: Vec<(&Cell, f64)> = cells.iter().filter_map(|c| fresh_t0(c).0.map(|m| (*c, m))).collect();

    if cells.is_empty() {
        return "No settings were measured under this profile.".to_string();
    }
    if measured.is_empty() {
        s.push(format!(
            "No t-visibility probes were recorded under `{}`, so this run says nothing about staleness.",
            p.profile.replace('`', "'")
        ));
    } else {
        let fresh: Vec<&(&Cell, f64)> = measured.iter().filter(|(_, m)| *m >= FRESH_TARGET).collect();
        let best_latency = fresh
            .iter()
            .filter(|(c, _)| c.get.count > 0)
            .min_by_key(|(c, _)| c.get.p999_us);
        match best_latency {
            Some((c, m)) => s.push(format!(
                "Among the {} whose measured P(fresh) at {t0_text} reached {FRESH_TARGET}, {} had the lowest \
                 read p99.9: {} ms (P(fresh) {}).",
                plural(fresh.len(), "setting"),
                setting_label(c, multi),
                fmt_ms(us_to_ms(c.get.p999_us)),
                fmt_prob(Some(*m))
            )),
            None if !fresh.is_empty() => s.push(format!(
                "{} reached a measured P(fresh) of {FRESH_TARGET} at {t0_text}, but no reads were measured \
                 under any of them.",
                plural(fresh.len(), "setting")
            )),
            None => {
                let freshest = measured.iter().max_by(|a, b| a.1.total_cmp(&b.1));
                if let Some((c, m)) = freshest {
                    s.push(format!(
                        "No setting reached a measured P(fresh) of {FRESH_TARGET} at {t0_text}; the freshest was {} \
                         with {} (read p99.9 {} ms).",
                        setting_label(c, multi),
                        fmt_prob(Some(*m)),
                        fmt_lat(&c.get, c.get.p999_us)
                    ));
                }
            }
        }

        let group = |strict: bool| -> String {
            let (kind, quorum) = if strict {
                ("r + w > n", "strict")
            } else {
                ("r + w ≤ n", "partial")
            };
            let members: Vec<&&Cell> = cells.iter().filter(|c| strict_quorum(c) == strict).collect();
            if members.is_empty() {
                return format!("no setting had {kind}");
            }
            let values: Vec<f64> = measured
                .iter()
                .filter(|(c, _)| strict_quorum(c) == strict)
                .map(|(_, m)| *m)
                .collect();
            let names = members
                .iter()
                .map(|c| setting_label(c, multi))
                .collect::<Vec<_>>()
                .join(", ");
            let who = format!(
                "{} with {kind} ({quorum} quorums: {names})",
                plural(members.len(), "setting")
            );
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            match values.len() {
                0 => format!("the {who} had no probes"),
                1 if members.len() == 1 => format!("the {who} measured P(fresh) {}", fmt_prob(Some(lo))),
                1 => format!(
                    "of the {who} only one was probed, measuring P(fresh) {}",
                    fmt_prob(Some(lo))
                ),
                _ if fmt_prob(Some(lo)) == fmt_prob(Some(hi)) => {
                    format!("the {who} all measured P(fresh) {}", fmt_prob(Some(lo)))
                }
                _ => format!(
                    "the {who} measured P(fresh) between {} and {}",
                    fmt_prob(Some(lo)),
                    fmt_prob(Some(hi))
                ),
            }
        };
        s.push(format!("At {t0_text}, {}, while {}.", group(true), group(false)));

        let late: Vec<String> = measured
            .iter()
            .filter(|(_, m)| *m < FRESH_TARGET)
            .map(|(c, _)| match first_reaching(c, FRESH_TARGET) {
                Some(v) => format!("{} reached it at t = {} ms", setting_label(c, multi), fmt_num(v.t_ms)),
                None => {
                    let tmax = c
                        .visibility
                        .iter()
                        .map(|v| v.t_ms)
                        .filter(|t| t.is_finite())
                        .fold(f64::NAN, f64::max);
                    format!(
                        "{} had not reached it by t = {} ms",
                        setting_label(c, multi),
                        fmt_num(tmax)
                    )
                }
            })
            .collect();
        if !late.is_empty() {
            s.push(format!(
                "Of the settings below {FRESH_TARGET} at {t0_text}, {}.",
                late.join("; ")
            ));
        }

        let pairs: Vec<(&Cell, f64, f64)> = cells
            .iter()
            .filter_map(|c| match fresh_t0(c) {
                (Some(m), Some(pr)) => Some((*c, m, pr)),
                _ => None,
            })
            .collect();
        let gap = |p: &&(&Cell, f64, f64)| (p.1 - p.2).abs();
        // The first setting with the largest gap, in table order.
        let widest = pairs.iter().reduce(|a, b| if gap(&b) > gap(&a) { b } else { a });
        if let Some((c, m, pr)) = widest {
            s.push(format!(
                "The PBS prediction at {t0_text} was available for {} of {} settings and was within {} of the \
                 measurement everywhere (largest gap: {}, measured {} vs predicted {}).",
                pairs.len(),
                cells.len(),
                fmt_num((m - pr).abs()),
                setting_label(c, multi),
                fmt_prob(Some(*m)),
                fmt_prob(Some(*pr))
            ));
        }
    }

    let failed: Vec<String> = cells
        .iter()
        .filter(|c| c.errors > 0)
        .map(|c| format!("{}: {}", setting_label(c, multi), c.errors))
        .collect();
    if !failed.is_empty() {
        let total: u64 = cells.iter().map(|c| c.errors).fold(0, u64::saturating_add);
        s.push(format!(
            "{} failed ({}).",
            plural_u64(total, "operation"),
            failed.join(", ")
        ));
    }
    s.join(" ")
}

// ---------------------------------------------------------------------------------------------
// Plots
// ---------------------------------------------------------------------------------------------

/// One figure, rendered once per backend.
enum Plot<'a> {
    Tradeoff(&'a ProfileRun),
    Visibility(&'a ProfileRun),
    Cdf(&'a ProfileRun),
}

impl Plot<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Plot::Tradeoff(_) => "tradeoff",
            Plot::Visibility(_) => "visibility",
            Plot::Cdf(_) => "latency-cdf",
        }
    }

    fn size(&self) -> (u32, u32) {
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
fn render(dir: &Path, stem: &str, plot: &Plot) -> Result<Vec<PathBuf>> {
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

fn draw_plot<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, plot: &Plot) -> Result<()>
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
const PALETTE: [RGBColor; 10] = [
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
const READ_COLOUR: RGBColor = RGBColor(31, 119, 180);
const WRITE_COLOUR: RGBColor = RGBColor(214, 39, 40);
const MEASURED_COLOUR: RGBColor = RGBColor(31, 119, 180);
const PREDICTED_COLOUR: RGBColor = RGBColor(255, 127, 14);

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

#[derive(Clone, Copy, PartialEq)]
enum Scale {
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
struct Axis {
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

fn sane_range(lo: f64, hi: f64) -> (f64, f64) {
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

fn nice_step(raw: f64) -> f64 {
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
struct Fonts {
    caption: u32,
    label: u32,
    desc: u32,
}

const BIG: Fonts = Fonts {
    caption: 22,
    label: 15,
    desc: 16,
};
const SMALL: Fonts = Fonts {
    caption: 17,
    label: 12,
    desc: 13,
};

/// Builds a chart with mesh, tick labels and axis descriptions on `area`.
fn chart<'a, DB: DrawingBackend>(
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

fn draw_legend<'a, DB: DrawingBackend + 'a>(
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
fn note_on<'a, DB: DrawingBackend + 'a>(chart: &Chart<'a, DB>, text: &str, size: u32) -> Result<()>
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

fn titled<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str) -> Result<DrawingArea<DB, Shift>>
where
    DB::ErrorType: 'static,
{
    Ok(root.titled(title, ("sans-serif", 26))?)
}

/// p99.9 latency against P(stale) at the smallest t, one point per setting.
fn draw_tradeoff<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, p: &ProfileRun) -> Result<()>
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
fn marker<DB: DrawingBackend>(read: bool, at: (i32, i32), style: ShapeStyle) -> DynElement<'static, DB, (i32, i32)> {
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
fn grid_keys(p: &ProfileRun) -> (Vec<(u8, u8)>, Vec<u8>) {
    let rows: BTreeSet<(u8, u8)> = p.cells.iter().map(|c| (c.n, c.w)).collect();
    let cols: BTreeSet<u8> = p.cells.iter().map(|c| c.r).collect();
    (rows.into_iter().collect(), cols.into_iter().collect())
}

/// A grid of t-visibility panels, rows = w, columns = r.
fn draw_visibility<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, p: &ProfileRun) -> Result<()>
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
struct CdfLine {
    colour: RGBColor,
    label: String,
    points: Vec<(f64, f64)>,
}

/// Get and put latency CDFs, one line per setting.
fn draw_cdf<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, p: &ProfileRun) -> Result<()>
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

    const T_GRID: [f64; 10] = [0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];

    fn latency(base_ms: f64, count: u64) -> Latency {
        let us = |f: f64| (base_ms * f * 1000.0) as u64;
        Latency {
            count,
            p50_us: us(1.0),
            p90_us: us(1.6),
            p99_us: us(3.0),
            p999_us: us(6.0),
            max_us: us(12.0),
        }
    }

    fn cdf(base_ms: f64) -> Vec<(f64, f64)> {
        (0..60)
            .map(|i| {
                let q = f64::from(i) / 59.0;
                (base_ms * 0.4 * (1.0 + 20.0 * q.powi(4)), (q * 1.05).min(1.0))
            })
            .collect()
    }

    fn leg(mean: f64) -> LegStat {
        LegStat {
            samples: 1000,
            mean_ms: mean,
            p50_ms: mean * 0.9,
            p99_ms: mean * 3.0,
        }
    }

    fn cell(base_ms: f64, r: u8, w: u8) -> Cell {
        let n = 3u8;
        let strict = r + w > n;
        let overlap = f64::from(r * w) / 9.0;
        let fresh = |t: f64| {
            if strict {
                1.0
            } else {
                1.0 - (1.0 - overlap) * 0.5 * (-t / (base_ms * 2.0)).exp()
            }
        };
        let visibility = T_GRID
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let probes = if r == 2 && w == 1 && i == 3 { 0 } else { 2000 };
                let m = fresh(t);
                VisibilityPoint {
                    t_ms: t,
                    probes,
                    fresh: (m * probes as f64) as u64,
                    measured: (probes > 0).then_some(m),
                    predicted: if r == 1 && w == 2 {
                        None
                    } else {
                        Some((m - 0.01).max(0.0))
                    },
                }
            })
            .collect();
        let k_staleness = (1..=3)
            .map(|k| KPoint {
                k,
                probes: 2000,
                measured: Some(1.0 - (1.0 - fresh(0.0)) / f64::from(k * k)),
                predicted: if k == 3 {
                    None
                } else {
                    Some(1.0 - (1.0 - fresh(0.0)) / f64::from(k))
                },
            })
            .collect();
        Cell {
            n,
            r,
            w,
            ops: 100_000,
            errors: u64::from(r == 3 && w == 3) * 7,
            elapsed_s: 10.0,
            throughput: 10_000.0 / f64::from(r + w),
            get: latency(base_ms * f64::from(r), 50_000),
            put: latency(base_ms * f64::from(w), 50_000),
            get_cdf: cdf(base_ms * f64::from(r)),
            put_cdf: cdf(base_ms * f64::from(w)),
            visibility,
            k_staleness,
            legs: LegSummary {
                w: leg(base_ms),
                a: leg(base_ms),
                r: leg(base_ms),
                s: leg(base_ms),
            },
        }
    }

    fn synthetic() -> MatrixReport {
        let profiles = [
            ("lan", "0.1 ms one-way, jitter 0.05 ms", 0.3),
            ("wan, 2 regions", "40 ms between regions", 45.0),
        ]
        .into_iter()
        .map(|(name, description, base)| ProfileRun {
            profile: name.to_string(),
            description: description.to_string(),
            nodes: 3,
            cells: (1..=3u8)
                .flat_map(|r| (1..=3u8).map(move |w| cell(base, r, w)))
                .collect(),
        })
        .collect();
        MatrixReport {
            title: "3 nodes, YCSB A, uniform keys, 1024-byte values".to_string(),
            command: "shoal bench --matrix --profiles lan,wan".to_string(),
            unix_time: 1_700_000_000,
            profiles,
        }
    }

    /// Splits a CSV line, honouring double-quoted fields.
    fn csv_fields(line: &str) -> Vec<String> {
        let mut fields = vec![String::new()];
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(ch) = chars.next() {
            match (ch, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    chars.next();
                    fields.last_mut().unwrap().push('"');
                }
                ('"', _) => quoted = !quoted,
                (',', false) => fields.push(String::new()),
                (c, _) => fields.last_mut().unwrap().push(c),
            }
        }
        fields
    }

    fn check_csv(path: &Path, columns: usize, rows: usize) {
        let text = fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), rows + 1, "{}: header plus {rows} rows", path.display());
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(csv_fields(line).len(), columns, "{} line {i}: {line}", path.display());
        }
    }

    /// JSON equality, allowing the last-bit float differences of serde_json's default (fast,
    /// not always correctly rounded) number parser.
    fn same_json(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
        use serde_json::Value;
        match (a, b) {
            (Value::Number(x), Value::Number(y)) if x != y => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!((x - y).abs() <= 1e-12 * x.abs().max(y.abs()), "{at}: {x} != {y}");
            }
            (Value::Array(x), Value::Array(y)) => {
                assert_eq!(x.len(), y.len(), "{at}");
                for (i, (x, y)) in x.iter().zip(y).enumerate() {
                    same_json(x, y, &format!("{at}[{i}]"));
                }
            }
            (Value::Object(x), Value::Object(y)) => {
                assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{at}");
                for (k, x) in x {
                    same_json(x, &y[k], &format!("{at}.{k}"));
                }
            }
            _ => assert_eq!(a, b, "{at}"),
        }
    }

    fn md_links(md: &str) -> Vec<String> {
        md.split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn writes_every_file() {
        let report = synthetic();
        let dir = tempfile::tempdir().unwrap();
        let written = write_all(&report, dir.path()).unwrap();

        let slugs = ["lan", "wan-2-regions"];
        let mut expected: Vec<PathBuf> = [
            "report.json",
            "matrix.csv",
            "visibility.csv",
            "k_staleness.csv",
            "report.md",
        ]
        .iter()
        .map(|f| dir.path().join(f))
        .collect();
        for slug in slugs {
            for kind in ["tradeoff", "visibility", "latency-cdf"] {
                for ext in ["svg", "png"] {
                    expected.push(dir.path().join("plots").join(format!("{kind}-{slug}.{ext}")));
                }
            }
        }
        for path in &expected {
            assert!(path.is_file(), "missing {}", path.display());
            assert!(written.contains(path), "not reported as written: {}", path.display());
        }
        assert_eq!(written.len(), expected.len());

        let json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
        let back: MatrixReport = serde_json::from_value(json.clone()).unwrap();
        let original = serde_json::to_value(&report).unwrap();
        same_json(&json, &original, "$");
        same_json(&serde_json::to_value(&back).unwrap(), &original, "$");

        check_csv(&dir.path().join("matrix.csv"), 21, 18);
        check_csv(&dir.path().join("visibility.csv"), 9, 18 * T_GRID.len());
        check_csv(&dir.path().join("k_staleness.csv"), 8, 18 * 3);
        let vis = fs::read_to_string(dir.path().join("visibility.csv")).unwrap();
        assert!(
            vis.contains("\"wan, 2 regions\",3,2,1,5,0,0,,"),
            "missing measurement is an empty field"
        );

        for (profile, slug) in report.profiles.iter().zip(slugs) {
            for kind in ["tradeoff", "visibility", "latency-cdf"] {
                let png = fs::read(dir.path().join("plots").join(format!("{kind}-{slug}.png"))).unwrap();
                assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{kind}-{slug}.png signature");
                assert!(png.len() > 5 * 1024, "{kind}-{slug}.png is only {} bytes", png.len());
                let svg = fs::read_to_string(dir.path().join("plots").join(format!("{kind}-{slug}.svg"))).unwrap();
                assert!(svg.contains("<svg"), "{kind}-{slug}.svg");
                assert!(
                    svg.contains(&profile.profile),
                    "{kind}-{slug}.svg names {}",
                    profile.profile
                );
            }
        }

        let md = fs::read_to_string(dir.path().join("report.md")).unwrap();
        let links = md_links(&md);
        for path in expected.iter().filter(|p| p.extension().is_some_and(|e| e == "png")) {
            let rel = path.strip_prefix(dir.path()).unwrap().to_string_lossy().to_string();
            assert!(
                md.contains(&format!("]({rel})")) && links.contains(&rel),
                "report.md does not embed {rel}"
            );
        }
        for link in &links {
            assert!(dir.path().join(link).is_file(), "report.md links to missing {link}");
        }
        assert!(md.contains(&report.command));
        assert!(md.contains("2023-11-14 22:13:20 UTC"));
        assert!(md.contains("lowest read p99.9"), "{md}");
        assert!(md.contains("r + w ≤ n"), "{md}");
    }

    #[test]
    fn summary_names_profiles_and_dashes_missing_values() {
        let report = synthetic();
        let table = summary_table(&report);
        assert!(table.contains("lan") && table.contains("wan, 2 regions"));
        assert!(table.contains("r1 w2"));
        // r1 w2 has no prediction.
        let line = table.lines().find(|l| l.starts_with("r1 w2")).unwrap();
        assert!(line.contains(DASH), "{line}");
        let widths: BTreeSet<usize> = table
            .lines()
            .filter(|l| l.starts_with('r'))
            .map(|l| l.chars().count())
            .collect();
        assert_eq!(widths.len(), 1, "rows are fixed width:\n{table}");
    }

    #[test]
    fn empty_and_odd_data_still_renders() {
        let mut report = synthetic();
        for p in &mut report.profiles {
            for c in &mut p.cells {
                c.get_cdf.clear();
                c.put_cdf.clear();
                c.visibility.clear();
                c.k_staleness.clear();
            }
        }
        // Zero latencies, nothing measured at all.
        let empty_lat = Latency {
            count: 0,
            p50_us: 0,
            p90_us: 0,
            p99_us: 0,
            p999_us: 0,
            max_us: 0,
        };
        for c in &mut report.profiles[0].cells {
            c.get = empty_lat.clone();
            c.put = empty_lat.clone();
        }
        // A profile with no cells, one whose name is also "lan", and one with odd values.
        report.profiles.push(ProfileRun {
            profile: "lan".into(),
            description: String::new(),
            nodes: 3,
            cells: vec![],
        });
        let mut odd = cell(1.0, 1, 1);
        odd.throughput = f64::NAN;
        odd.get_cdf = vec![(0.0, 0.1), (f64::NAN, 0.5), (2.0, f64::INFINITY), (2.0, 1.0)];
        odd.put_cdf = vec![(3.0, 0.5)];
        odd.visibility = vec![
            VisibilityPoint {
                t_ms: -1.0,
                probes: 1,
                fresh: 1,
                measured: Some(1.0),
                predicted: None,
            },
            VisibilityPoint {
                t_ms: 0.0,
                probes: 0,
                fresh: 0,
                measured: None,
                predicted: Some(f64::NAN),
            },
            VisibilityPoint {
                t_ms: f64::NAN,
                probes: 5,
                fresh: 5,
                measured: Some(2.0),
                predicted: Some(-1.0),
            },
        ];
        let mut single = cell(1.0, 2, 2);
        single.visibility.truncate(1);
        single.get = latency(5.0, 10);
        report.profiles.push(ProfileRun {
            profile: "../weird/<profile>.toml".into(),
            description: "a | b".into(),
            nodes: 5,
            cells: vec![odd, single, cell(2.0, 1, 1)],
        });

        let dir = tempfile::tempdir().unwrap();
        let written = write_all(&report, dir.path()).unwrap();
        assert_eq!(written.len(), 5 + report.profiles.len() * 6);
        for path in &written {
            assert!(path.is_file(), "{}", path.display());
            assert!(
                path.starts_with(dir.path()),
                "{} escapes the report directory",
                path.display()
            );
        }
        assert!(dir.path().join("plots/tradeoff-lan-2.svg").is_file());
        assert!(dir.path().join("plots/visibility-weird-profile-toml.png").is_file());
        check_csv(&dir.path().join("visibility.csv"), 9, 3 + 1 + 10);
        let table = summary_table(&report);
        assert!(table.contains("(no settings measured)"));
        let md = fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(md.contains("No t-visibility probes"), "{md}");
        assert!(md.contains("\\<profile\\>"), "angle brackets are escaped: {md}");
        for link in md_links(&md) {
            assert!(dir.path().join(&link).is_file(), "report.md links to missing {link}");
        }

        // An empty report is fine too.
        let none = MatrixReport {
            title: String::new(),
            command: "a ```weird``` command".into(),
            unix_time: 0,
            profiles: vec![],
        };
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(write_all(&none, dir.path()).unwrap().len(), 5);
        assert!(summary_table(&none).is_empty());
    }

    #[test]
    fn extreme_values_and_wide_grids_do_not_panic() {
        let mut cells = Vec::new();
        for r in 1..=40u8 {
            let mut c = cell(1.0, r, 1 + r % 3);
            c.n = 40;
            c.get.p999_us = if r == 1 { u64::MAX } else { u64::from(r) };
            c.put.p999_us = 0;
            c.get_cdf = vec![(1e-300, 0.0), (1e300, 1.0)];
            c.put_cdf = vec![(5.0, 0.5); 3];
            for v in &mut c.visibility {
                v.t_ms *= 1e12;
                v.measured = v.measured.map(|m| m * 1e-9);
            }
            cells.push(c);
        }
        let report = MatrixReport {
            title: "extreme".into(),
            command: "shoal bench".into(),
            unix_time: u64::MAX,
            profiles: vec![ProfileRun {
                profile: "x".into(),
                description: "d".into(),
                nodes: 40,
                cells,
            }],
        };
        let dir = tempfile::tempdir().unwrap();
        write_all(&report, dir.path()).unwrap();
        assert!(!summary_table(&report).is_empty());
    }

    #[test]
    fn helpers() {
        assert_eq!(slug("LNKD-SSD"), "lnkd-ssd");
        assert_eq!(slug("///"), "profile");
        assert_eq!(utc_datetime(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_datetime(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(fmt_num(0.30000000000000004), "0.3");
        assert_eq!(fmt_num(500.0), "500");
        assert_eq!(fmt_num(2.5), "2.5");
        let log = Axis::log(0.3, 800.0);
        assert!(!log.ticks.is_empty() && log.ticks.len() <= 12);
        let lin = Axis::linear(5.0, 5.0);
        assert!(lin.lo < lin.hi && !lin.ticks.is_empty());
    }
}
