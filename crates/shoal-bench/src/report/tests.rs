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
}

#[test]
fn wilson_intervals_match_their_closed_form() {
    let (lo, hi) = wilson95(150, 300).unwrap();
    assert!((lo - 0.4438).abs() < 1e-3 && (hi - 0.5562).abs() < 1e-3, "{lo} {hi}");
    // All fresh still leaves room below 1: 300 probes cannot show 0.999.
    let (lo, hi) = wilson95(300, 300).unwrap();
    assert!((lo - 0.9874).abs() < 1e-3 && hi == 1.0, "{lo} {hi}");
    let (lo, hi) = wilson95(0, 300).unwrap();
    assert!(lo == 0.0 && (hi - 0.0126).abs() < 1e-3, "{lo} {hi}");
    assert!(wilson95(0, 0).is_none());
    let point = |fresh, predicted| VisibilityPoint {
        t_ms: 0.0,
        probes: 300,
        fresh,
        measured: Some(fresh as f64 / 300.0),
        predicted,
    };
    assert_eq!(prediction_within_interval(&point(150, Some(0.5))), Some(true));
    assert_eq!(prediction_within_interval(&point(150, Some(0.6))), Some(false));
    assert_eq!(prediction_within_interval(&point(150, None)), None);
    assert_eq!(prediction_within_interval(&point(300, Some(1.0))), Some(true));
}
