//! Disk full, for real: n3's data directory is a small tmpfs, filled from outside with a ballast
//! file until it is under `storage.min_free_bytes`. Writes that need n3's replica are refused
//! cleanly (507 through n3, a failed replica naming the limit through the others), reads keep
//! working, n3 restarts fine while full, and once the ballast is gone n3 takes writes again by
//! itself. Nothing acknowledged is lost. Needs root (mount); says SKIPPED otherwise.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;

const MIN_FREE: u64 = 64 << 20;
const TMPFS_MB: u64 = 256;

async fn put(cluster: &TestCluster, i: usize, key: &str, query: &str) -> (StatusCode, serde_json::Value) {
    let resp = http()
        .put(cluster.kv(i, key, query))
        .body(format!("value-of-{key}"))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

async fn read(cluster: &TestCluster, i: usize, key: &str, query: &str) -> (StatusCode, String) {
    let resp = http().get(cluster.kv(i, key, query)).send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    if status.is_server_error() {
        eprintln!("read {key} {query} through n{}: {status} {text}", i + 1);
    }
    (status, text)
}

async fn disk_full_gauge(cluster: &TestCluster, i: usize) -> Option<f64> {
    metric_value(&cluster.metrics(i).await, "shoal_disk_full")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers_by_itself() {
    let extra = format!(
        "[storage]\nmin_free_bytes = {MIN_FREE}\n\n[antientropy]\ninterval_ms = 1000\n\n\
         [swim]\nprobe_interval_ms = 500\nprobe_timeout_ms = 200\n"
    );
    let mut cluster = TestCluster::prepare(3, 3, &extra);
    let data = cluster.data_dir(2);
    let _tmpfs = match Tmpfs::mount(&data, TMPFS_MB) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIPPED: cannot mount a tmpfs for n3's data directory (needs root): {e}");
            return;
        }
    };
    for i in 0..3 {
        cluster.spawn(i);
    }
    for i in 0..3 {
        cluster.wait_ready(i);
    }

    // Before: every write is taken by all three.
    let mut acked: Vec<String> = Vec::new();
    for k in 0..100 {
        let key = format!("before-{k}");
        let (status, body) = put(&cluster, k % 3, &key, "w=3").await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{key}: {body}");
        acked.push(key);
    }

    // Fill n3's filesystem from outside until it is under the limit, as a log file or another
    // tenant would.
    let free = available(&data);
    let ballast = data.join("ballast");
    let fill = free - MIN_FREE / 2;
    let out = Command::new("fallocate")
        .args(["-l", &fill.to_string(), path_str(&ballast)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fallocate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "n3's tmpfs had {free} bytes free; a {fill}-byte ballast leaves {} (limit {MIN_FREE})",
        available(&data)
    );
    let seen = eventually(Duration::from_secs(10), || async {
        (disk_full_gauge(&cluster, 2).await? == 1.0).then_some(())
    })
    .await;
    assert!(seen.is_some(), "n3 never reported shoal_disk_full = 1");

    // Through n3: 507, naming the limit.
    let (status, body) = put(&cluster, 2, "through-n3", "w=1").await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert_eq!(body["error"], "insufficient_storage", "{body}");
    assert_eq!(body["param"], "min_free_bytes", "{body}");
    assert_eq!(body["limit"], MIN_FREE, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("storage.min_free_bytes"),
        "{body}"
    );
    // Through n1 with w=3: n3's refusal is a failed replica that says why.
    let (status, body) = put(&cluster, 0, "needs-n3", "w=3").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let n3 = body["failed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["node"] == "n3")
        .unwrap_or_else(|| panic!("n3 is not among the failed replicas: {body}"));
    assert!(n3["reason"].as_str().unwrap().contains("disk full"), "{body}");
    // With w=2 the other two take it: the cluster stays writable.
    let mut during = Vec::new();
    for k in 0..100 {
        let key = format!("during-{k}");
        let (status, body) = put(&cluster, k % 2, &key, "w=2").await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{key}: {body}");
        during.push(key);
    }
    // Reads through n3 work, from its own replica (r=1) and with every replica (r=3).
    for key in acked.iter().take(30) {
        for q in ["r=1", "r=3"] {
            let (status, text) = read(&cluster, 2, key, q).await;
            assert_eq!(status, StatusCode::OK, "{key} {q}");
            assert_eq!(text, format!("value-of-{key}"));
        }
    }
    let before_restart = available(&data);
    assert!(
        before_restart > 0,
        "the filesystem really filled up: RocksDB was not protected"
    );

    // kill -9 while full: n3 comes back, serves reads, still refuses writes.
    cluster.kill9(2);
    cluster.spawn(2);
    cluster.wait_ready(2);
    let (status, text) = read(&cluster, 2, &acked[0], "r=1").await;
    assert_eq!((status, text), (StatusCode::OK, format!("value-of-{}", acked[0])));
    let (status, body) = put(&cluster, 2, "after-restart", "w=1").await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");

    // Space returns: n3 takes writes again without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let freed = Instant::now();
    let back = eventually(Duration::from_secs(15), || async {
        let (status, _) = put(&cluster, 2, "after-space-returns", "w=3").await;
        (status == StatusCode::NO_CONTENT).then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "n3 did not take writes again within 15 s of the space returning"
    );
    eprintln!(
        "n3 took writes again {:.1} s after the ballast was removed",
        freed.elapsed().as_secs_f64()
    );
    acked.push("after-space-returns".into());
    // The gauges are refreshed every second.
    let cleared = eventually(Duration::from_secs(5), || async {
        (disk_full_gauge(&cluster, 2).await? == 0.0).then_some(())
    })
    .await;
    assert!(cleared.is_some(), "shoal_disk_full stayed 1 after the space returned");

    // Nothing acknowledged is lost, and n3 catches up on what it refused.
    acked.extend(during.iter().cloned());
    for key in &acked {
        let (status, text) = read(&cluster, key.len() % 3, key, "r=3").await;
        assert_eq!(status, StatusCode::OK, "acknowledged {key} lost");
        assert_eq!(text, format!("value-of-{key}"));
    }
    // The r=3 reads repair n3 (read repair is sent after the answer) and anti-entropy runs
    // every second: give both a moment, then count n3's copies on its disk.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in 0..3 {
        cluster.stop(i);
    }
    let on_n3: std::collections::HashSet<String> = cluster.inspect(2).into_iter().map(|(k, _, _)| k).collect();
    let missing: Vec<&String> = acked.iter().filter(|k| !on_n3.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "n3 lacks {} acknowledged keys: {missing:?}",
        missing.len()
    );
    eprintln!(
        "checked {} acknowledged keys: readable with r=3 after recovery, and all on n3's disk",
        acked.len()
    );
}
