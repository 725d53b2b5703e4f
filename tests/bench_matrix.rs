//! `shoal bench --matrix`: a short consistency matrix on an embedded 3-node cluster of real
//! processes writes a report whose files exist, parse, and hold a figure for every setting;
//! and the live prediction answers on a running cluster.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::*;

fn csv_rows(path: &std::path::Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn a_short_matrix_reports_every_setting_measured_and_predicted() {
    let out = tempfile::tempdir().unwrap();
    let base = free_block(3, &[0, 1000, 2000]);
    let t0 = std::time::Instant::now();
    let output = Command::new(SHOAL)
        .args([
            "bench",
            "--nodes",
            "3",
            "--n",
            "3",
            "--matrix",
            "--duration",
            "2",
            "--warmup",
            "0",
            "--keys",
            "200",
            "--value-size",
            "128",
            "--concurrency",
            "4",
            "--probe-workers",
            "4",
            "--t-ms",
            "0,5,50",
            "--trials",
            "2000",
            "--base-port",
            &base.to_string(),
            "--out",
            path_str(out.path()),
        ])
        .output()
        .expect("running shoal bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "shoal bench failed\n{stdout}\n{stderr}");
    println!("matrix of 9 settings ran in {:.1} s", t0.elapsed().as_secs_f64());

    // The JSON report: one profile, nine settings, each measured and predicted.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).expect("report.json parses");
    let profiles = json["profiles"].as_array().expect("profiles");
    assert_eq!(profiles.len(), 1);
    assert_eq!(profiles[0]["profile"], "lan");
    let cells = profiles[0]["cells"].as_array().expect("cells");
    let settings: BTreeSet<(u64, u64)> = cells
        .iter()
        .map(|c| (c["r"].as_u64().unwrap(), c["w"].as_u64().unwrap()))
        .collect();
    let all: BTreeSet<(u64, u64)> = (1..=3).flat_map(|r| (1..=3).map(move |w| (r, w))).collect();
    assert_eq!(settings, all, "every (r, w) from (1, 1) to (3, 3)");
    let mut probes = 0;
    for c in cells {
        let setting = format!("r={} w={}", c["r"], c["w"]);
        assert!(c["throughput"].as_f64().unwrap() > 0.0, "{setting}: throughput");
        assert!(c["get"]["count"].as_u64().unwrap() > 0, "{setting}: gets measured");
        assert!(c["put"]["count"].as_u64().unwrap() > 0, "{setting}: puts measured");
        assert!(c["get"]["p999_us"].as_u64().unwrap() >= c["get"]["p50_us"].as_u64().unwrap());
        let vis = c["visibility"].as_array().expect("visibility");
        assert_eq!(vis.len(), 3, "{setting}: one point per t");
        for p in vis {
            assert!(
                p["probes"].as_u64().unwrap() > 0,
                "{setting}: probes at t={}",
                p["t_ms"]
            );
            probes += p["probes"].as_u64().unwrap();
            let measured = p["measured"].as_f64().expect("measured");
            let predicted = p["predicted"].as_f64().expect("predicted");
            assert!((0.0..=1.0).contains(&measured) && (0.0..=1.0).contains(&predicted));
            // Strict quorums always intersect: every probe read is fresh, and the model says so.
            if c["r"].as_u64().unwrap() + c["w"].as_u64().unwrap() > 3 {
                assert_eq!(measured, 1.0, "{setting}: a strict quorum read was stale");
                assert_eq!(
                    predicted, 1.0,
                    "{setting}: the model predicts staleness for a strict quorum"
                );
            }
        }
        let k = c["k_staleness"].as_array().expect("k_staleness");
        assert_eq!(k.len(), 3, "{setting}: k = 1, 2, 3");
        let within: Vec<f64> = k.iter().map(|p| p["measured"].as_f64().unwrap()).collect();
        assert!(
            within.windows(2).all(|w| w[0] <= w[1]),
            "{setting}: k-staleness grows with k"
        );
        assert!(
            c["legs"]["w"]["samples"].as_u64().unwrap() > 0,
            "{setting}: W legs measured"
        );
    }
    assert_eq!(
        cells.iter().map(|c| c["errors"].as_u64().unwrap()).sum::<u64>(),
        0,
        "no request failed"
    );

    // The CSVs hold one row per setting (and per t / per k).
    let matrix = csv_rows(&out.path().join("matrix.csv"));
    assert_eq!(matrix.len(), 1 + 9);
    assert!(
        matrix.iter().all(|r| r.len() == matrix[0].len()),
        "every row has every column"
    );
    assert_eq!(csv_rows(&out.path().join("visibility.csv")).len(), 1 + 9 * 3);
    assert_eq!(csv_rows(&out.path().join("k_staleness.csv")).len(), 1 + 9 * 3);

    // Plots in both formats, and the Markdown report that embeds them.
    for plot in ["tradeoff-lan", "visibility-lan", "latency-cdf-lan"] {
        let png = std::fs::read(out.path().join(format!("plots/{plot}.png"))).expect("png");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000, "{plot}.png");
        let svg = std::fs::read_to_string(out.path().join(format!("plots/{plot}.svg"))).expect("svg");
        assert!(svg.contains("<svg"), "{plot}.svg");
    }
    let md = std::fs::read_to_string(out.path().join("report.md")).expect("report.md");
    for plot in ["tradeoff-lan", "visibility-lan", "latency-cdf-lan"] {
        assert!(md.contains(&format!("plots/{plot}.png")), "report.md embeds {plot}");
    }
    println!("report checked: 9 settings, {probes} freshness probes, CSVs, 6 plots, report.md");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_prediction_answers_from_measured_legs() {
    let cluster = TestCluster::start(3, "");
    let node = 0;
    // Before any traffic there is nothing to predict from.
    let early = http()
        .get(cluster.url(node, "/v1/admin/consistency?n=3&r=1&w=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 409);
    let body = early.text().await.unwrap();
    assert!(body.contains("no latency samples"), "{body}");

    let client = http();
    for i in 0..200 {
        let url = cluster.url(node, &format!("/v1/kv/live-{i}?w=1"));
        assert!(client.put(url).body("v").send().await.unwrap().status().is_success());
        // r = 1 right after w = 1 may meet a replica the write has not reached yet: 404 is a
        // legitimate answer here, and either way the read's legs are measured.
        let url = cluster.url(node, &format!("/v1/kv/live-{i}?r=1"));
        let status = client.get(url).send().await.unwrap().status();
        assert!(status == 200 || status == 404, "read {i}: {status}");
    }
    let p = eventually(Duration::from_secs(10), || async {
        cluster
            .get_json(node, "/v1/admin/consistency?n=3&r=1&w=1&t=0,10,1000")
            .await
            .filter(|p| p["t_visibility"].is_array())
    })
    .await
    .expect("a prediction once traffic flowed");
    let vis = p["t_visibility"].as_array().unwrap();
    assert_eq!(vis.len(), 3);
    let fresh: Vec<f64> = vis.iter().map(|x| x["p_fresh"].as_f64().unwrap()).collect();
    assert!(
        fresh.windows(2).all(|w| w[0] <= w[1]),
        "t-visibility grows with t: {fresh:?}"
    );
    assert!(
        fresh[2] > 0.999,
        "a second after the ack a write is everywhere on loopback: {fresh:?}"
    );
    assert!(p["legs_ms"]["remote"]["w"]["samples"].as_u64().unwrap() > 0);
    assert!(p["legs_ms"]["local"]["r"]["samples"].as_u64().unwrap() > 0);
    let strict = cluster
        .get_json(node, "/v1/admin/consistency?n=3&r=2&w=2&t=0")
        .await
        .unwrap();
    assert_eq!(strict["t_visibility"][0]["p_fresh"], 1.0, "r + w > n is always fresh");
    // Impossible settings are refused as the kv API refuses them, never silently shrunk.
    for (query, names) in [
        ("n=3&r=4&w=1", "r: between 1 and n = 3, got 4"),
        ("n=3&r=1&w=0", "w: between 1 and n = 3, got 0"),
        ("n=4&r=1&w=1", "n: between 1 and the 3 members"),
        ("n=3&trials=0", "max_trials"),
        ("n=3&t=-1", "t:"),
    ] {
        let resp = http()
            .get(cluster.url(node, &format!("/v1/admin/consistency?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        let body = resp.text().await.unwrap();
        assert!(body.contains(names), "{query}: {body}");
    }

    // The CLI prints the same prediction.
    let out = run_shoal(&[
        "admin",
        "consistency",
        "--endpoint",
        &cluster.url(node, ""),
        "--n",
        "3",
        "--r",
        "1",
        "--w",
        "1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("t-visibility") && text.contains("k = 3"), "{text}");
    println!("live prediction from node 1: t-visibility {fresh:?} at t = 0, 10, 1000 ms; CLI prints it");
}
