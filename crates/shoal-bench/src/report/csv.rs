//! The CSV files of a matrix report, and writing files.

use super::*;

pub(super) fn write_file(path: &Path, contents: &str, written: &mut Vec<PathBuf>) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    written.push(path.to_path_buf());
    Ok(())
}

pub(super) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub(super) fn csv_num(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}

pub(super) fn csv_opt(v: Option<f64>) -> String {
    usable(v).map(csv_num).unwrap_or_default()
}

/// One CSV row about setting `c` of profile `p`: profile, n, r, w, then `fields`.
pub(super) fn push_setting_row(out: &mut String, p: &ProfileRun, c: &Cell, fields: &[String]) {
    let setting = [csv_field(&p.profile), c.n.to_string(), c.r.to_string(), c.w.to_string()];
    out.push_str(&setting.join(","));
    for f in fields {
        out.push(',');
        out.push_str(f);
    }
    out.push('\n');
}

pub(super) fn matrix_csv(report: &MatrixReport) -> String {
    let mut out = String::from(
        "profile,n,r,w,ops,errors,throughput,get_p50_ms,get_p90_ms,get_p99_ms,get_p999_ms,\
         put_p50_ms,put_p90_ms,put_p99_ms,put_p999_ms,p_fresh_t0_measured,p_fresh_t0_predicted,\
         w_mean_ms,a_mean_ms,r_mean_ms,s_mean_ms\n",
    );
    for p in &report.profiles {
        for c in &p.cells {
            let (m, pr) = fresh_t0(c);
            let lat = |us: u64| csv_num(us_to_ms(us));
            push_setting_row(
                &mut out,
                p,
                c,
                &[
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

pub(super) fn visibility_csv(report: &MatrixReport) -> String {
    let mut out = String::from("profile,n,r,w,t_ms,probes,fresh,measured,predicted\n");
    for p in &report.profiles {
        for c in &p.cells {
            for v in &c.visibility {
                push_setting_row(
                    &mut out,
                    p,
                    c,
                    &[
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

pub(super) fn k_staleness_csv(report: &MatrixReport) -> String {
    let mut out = String::from("profile,n,r,w,k,probes,measured,predicted\n");
    for p in &report.profiles {
        for c in &p.cells {
            for k in &c.k_staleness {
                push_setting_row(
                    &mut out,
                    p,
                    c,
                    &[
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
