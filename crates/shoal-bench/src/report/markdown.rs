//! `report.md`: the tables, the embedded plots and a computed reading of them.

use super::*;

/// Text that Markdown must show as written: punctuation with a meaning in Markdown (including
/// table pipes and HTML angle brackets) is backslash-escaped, and line breaks become spaces.
pub(super) fn md_text(s: &str) -> String {
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

pub(super) fn markdown(report: &MatrixReport, slugs: &[String]) -> String {
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

pub(super) fn profile_markdown(md: &mut String, p: &ProfileRun, slug: &str) {
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
            let measured = match first_visibility(c).filter(|_| m.is_some()) {
                Some(v) => format!("{} ({}/{})", fmt_prob(m), v.fresh, v.probes),
                None => fmt_prob(m),
            };
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
                measured,
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

pub(super) fn k_staleness_markdown(md: &mut String, cells: &[&Cell], multi: bool) {
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
pub(super) fn findings(p: &ProfileRun, cells: &[&Cell], multi: bool, t0_text: &str) -> String {
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
        let points: Vec<bool> = cells
            .iter()
            .flat_map(|c| c.visibility.iter().filter_map(prediction_within_interval))
            .collect();
        if !points.is_empty() {
            let inside = points.iter().filter(|x| **x).count();
            s.push(format!(
                "Over every probed t, the prediction fell inside the measurement's 95% (Wilson) interval at \
                 {inside} of {} (setting, t) points; about 5% outside is what sampling alone gives.",
                points.len()
            ));
        }
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
