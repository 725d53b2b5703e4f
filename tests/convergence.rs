//! Replicas converge without an operator, with real processes: hinted handoff repairs nodes
//! that were down during writes, anti-entropy alone repairs them when handoff is off and finds
//! divergence written behind the cluster's back, and deleted keys never come back while their
//! tombstones are collected everywhere.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;

/// Fast SWIM (dead within a few seconds) for every test here.
const FAST_SWIM: &str = "[swim]\nprobe_interval_ms = 500\nprobe_timeout_ms = 200\npush_pull_interval_ms = 5000\n";

async fn aae(cluster: &TestCluster, i: usize) -> Option<serde_json::Value> {
    cluster.get_json(i, "/v1/admin/aae").await
}

/// The sum of one field (`keys`, `tombstones`) over the trees in an aae status.
fn trees_total(status: &serde_json::Value, field: &str) -> u64 {
    status["trees"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t[field].as_u64().unwrap_or(0))
        .sum()
}

fn hints_pending(status: &serde_json::Value) -> u64 {
    status["hints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| h["pending"].as_u64().unwrap_or(0))
        .sum()
}

/// (partition, n) → root, for every tree node `i` holds with at least one key.
async fn roots(cluster: &TestCluster, i: usize) -> Option<BTreeMap<(u64, u64), String>> {
    let s = aae(cluster, i).await?;
    Some(
        s["trees"]
            .as_array()?
            .iter()
            .filter(|t| t["keys"].as_u64() > Some(0))
            .map(|t| {
                (
                    (t["partition"].as_u64().unwrap(), t["n"].as_u64().unwrap()),
                    t["root"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
    )
}

/// Write keys `prefix0..prefixN` with n=3, w=2 through nodes `via` in turn, `concurrency` at a
/// time; every write must succeed. Returns how many acks were hinted copies.
async fn write_all(cluster: &TestCluster, via: &[usize], prefix: &str, count: usize, concurrency: usize) -> u64 {
    let urls: Arc<Vec<String>> = Arc::new(via.iter().map(|i| cluster.url(*i, "")).collect());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (urls, next, prefix) = (urls.clone(), next.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let http = http();
            let mut hinted = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return hinted;
                }
                let url = format!("{}/v1/kv/{prefix}{i}?n=3&w=2", urls[i % urls.len()]);
                let resp = http.put(url).body(format!("value-{i}")).send().await.unwrap();
                let status = resp.status();
                let h = resp.headers().get("x-shoal-hinted-acks").cloned();
                assert_eq!(
                    status,
                    StatusCode::NO_CONTENT,
                    "write {prefix}{i} refused: {}",
                    resp.text().await.unwrap()
                );
                hinted += h.and_then(|v| v.to_str().ok()?.parse::<u64>().ok()).unwrap_or(0);
            }
        }));
    }
    let mut hinted = 0;
    for t in tasks {
        hinted += t.await.unwrap();
    }
    hinted
}

#[tokio::test(flavor = "multi_thread")]
async fn hints_bring_restarted_nodes_their_copies() {
    // Anti-entropy off: whatever reaches the restarted nodes comes through hints.
    let config = format!("{FAST_SWIM}\n[antientropy]\nenabled = false\n");
    let mut cluster = TestCluster::start(5, &config);
    // Every node must know every other before two die, or SWIM has nobody to declare dead.
    wait_all_alive(&cluster, 5).await;
    cluster.kill9(3);
    cluster.kill9(4);
    cluster.wait_dead(&[0, 1, 2], &["n4", "n5"]).await;

    let keys = 10_000;
    let started = Instant::now();
    let hinted = write_all(&cluster, &[0, 1, 2], "h", keys, 32).await;
    eprintln!(
        "wrote {keys} keys (n=3, w=2) with n4 and n5 down in {:?}: {hinted} acks were hinted copies",
        started.elapsed()
    );
    assert!(hinted > 0, "some writes must have gone through hinted copies");
    let mut held = 0;
    for i in 0..3 {
        held += hints_pending(&aae(&cluster, i).await.unwrap());
    }
    assert!(held > 0, "the fallbacks hold hints");

    cluster.spawn(3);
    cluster.spawn(4);
    cluster.wait_ready(3);
    cluster.wait_ready(4);
    let started = Instant::now();
    let drained = eventually(Duration::from_secs(90), || async {
        let mut left = 0;
        for i in 0..5 {
            left += hints_pending(&aae(&cluster, i).await?);
        }
        (left == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "hints were not all delivered within 90 s");
    eprintln!("{held} hints delivered within {:?} of the restart", started.elapsed());

    // Every key is on exactly the three nodes of its preference list, counted on disk, and no
    // node still holds a hint.
    for i in 0..5 {
        cluster.stop(i);
    }
    for i in 0..5 {
        let out = run_shoal(&["inspect", "--hints", "--data-dir", path_str(&cluster.data_dir(i))]);
        assert!(out.status.success());
        assert!(out.stdout.is_empty(), "n{} still holds hints", i + 1);
    }
    let written: Vec<(String, u8)> = (0..keys).map(|k| (format!("h{k}"), 3)).collect();
    assert_on_preference_lists(&cluster, 5, &written);
    eprintln!("all {keys} keys are on exactly their 3 primary nodes; no hints remain");
}

/// Nodes 0..size agree on every tree's root.
async fn converged(cluster: &TestCluster, size: usize) -> Option<usize> {
    let first = roots(cluster, 0).await?;
    for i in 1..size {
        let other = roots(cluster, i).await?;
        // Each node holds trees for the partitions it replicates; with n = size every node
        // replicates every partition, so the maps must be equal.
        if other != first {
            return None;
        }
    }
    Some(first.len())
}

async fn exchanges(cluster: &TestCluster, i: usize) -> f64 {
    let text = cluster.metrics(i).await;
    text.lines()
        .filter(|l| l.starts_with("shoal_aae_exchanges_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn anti_entropy_alone_repairs_a_node_that_missed_writes() {
    let config = format!(
        "{FAST_SWIM}\n[handoff]\nenabled = false\n\n[requests]\nsloppy_quorum = false\n\n[antientropy]\ninterval_ms = 2000\n"
    );
    let mut cluster = TestCluster::start(3, &config);
    cluster.kill9(2);
    write_all(&cluster, &[0, 1], "a", 3000, 16).await;
    assert!(converged(&cluster, 2).await.is_some(), "the two live replicas agree");
    // Sends to n3 still in flight would land once it is back (Dynamo's stragglers): wait out
    // the request timeout so that only anti-entropy can bring n3 the writes it missed, and
    // check that its disk holds none of them.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(cluster.inspect(2).is_empty(), "n3 missed every write");
    let started = Instant::now();
    cluster.spawn(2);
    cluster.wait_ready(2);
    let trees = eventually(Duration::from_secs(60), || converged(&cluster, 3)).await;
    let trees = trees.expect("anti-entropy did not converge the replicas within 60 s");
    let took = started.elapsed();
    // The restarted n3 counts its exchanges from zero. Each round it exchanges each of its
    // trees once, and in its first round it asks about every partition it replicates, so it
    // is whole after one round: no tree needs a second repairing exchange from n3. Its later
    // rounds are quick in-sync checks, one every interval, and one or two have begun by the
    // time the test sees convergence (polling three nodes' status takes a while).
    let text = cluster.metrics(2).await;
    let repairing = metric_value(&text, "shoal_aae_exchanges_total{result=\"repaired\"}").unwrap_or(0.0);
    let rounds = exchanges(&cluster, 2).await / trees as f64;
    eprintln!(
        "all 3 replicas reached the same {trees} Merkle roots {took:?} after the restart began; \
         n3 had run {rounds:.2} rounds of exchanges, {repairing} of which repaired something"
    );
    assert!(
        repairing <= trees as f64 * 1.1,
        "n3 needed {repairing} repairing exchanges for {trees} trees"
    );
    assert!(rounds <= 4.0, "took n3 {rounds:.1} rounds of exchanges");
    for k in (0..3000).step_by(97) {
        let resp = http().get(cluster.kv(2, &format!("a{k}"), "r=1")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn divergence_written_behind_the_cluster_is_found_and_repaired() {
    let config = format!("{FAST_SWIM}\n[antientropy]\ninterval_ms = 2000\n");
    let mut cluster = TestCluster::start(3, &config);
    write_all(&cluster, &[0, 1, 2], "d", 500, 8).await;
    // Behind the cluster's back: n3 is stopped, and values are written straight into its
    // storage, overwriting 10 keys and adding 10 that no other replica has.
    cluster.stop(2);
    let mut injected = Vec::new();
    for k in 0..20 {
        let key = if k < 10 { format!("d{k}") } else { format!("new{k}") };
        let value = format!("injected-{k}");
        let out = run_shoal(&[
            "inject",
            "--data-dir",
            path_str(&cluster.data_dir(2)),
            "--node-id",
            "n3",
            &key,
            &value,
        ]);
        assert!(out.status.success(), "inject: {}", String::from_utf8_lossy(&out.stderr));
        injected.push((key, value));
    }
    cluster.spawn(2);
    cluster.wait_ready(2);
    let found = eventually(Duration::from_secs(60), || converged(&cluster, 3)).await;
    assert!(found.is_some(), "the replicas did not converge within 60 s");
    let mut divergent = 0.0;
    for i in 0..3 {
        divergent += metric_value(&cluster.metrics(i).await, "shoal_aae_divergent_keys_total").unwrap_or(0.0);
    }
    eprintln!("anti-entropy found {divergent} divergent keys (20 injected) and converged");
    assert!(
        divergent >= 20.0,
        "the metrics count the divergent keys, got {divergent}"
    );
    // Every injected value reached every replica: an r=1 read on each node sees it.
    for (key, value) in &injected {
        for i in 0..3 {
            let resp = http()
                .get(cluster.kv(i, key, "r=1"))
                .header("accept", "application/json")
                .send()
                .await
                .unwrap();
            let body = resp.text().await.unwrap();
            let engine = base64::engine::general_purpose::STANDARD;
            use base64::Engine;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let values: Vec<String> = v["siblings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| String::from_utf8(engine.decode(s.as_str().unwrap()).unwrap()).unwrap())
                .collect();
            assert!(values.contains(value), "n{} lacks {key}={value}: {values:?}", i + 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_keys_never_come_back_and_their_tombstones_go() {
    let config = format!(
        "{FAST_SWIM}\n[antientropy]\ninterval_ms = 1000\ntombstone_grace_secs = 4\n\n[handoff]\nwindow_secs = 2\n"
    );
    let cluster = TestCluster::start(3, &config);
    let keys = 200;
    for k in 0..keys {
        let resp = http()
            .put(cluster.kv(0, &format!("t{k}"), "w=3"))
            .body("alive")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    // n3 is cut off (paused), then the keys are deleted with w=2 on the others.
    cluster.signal(2, "-STOP");
    cluster.wait_dead(&[0, 1], &["n3"]).await;
    for k in 0..keys {
        let resp = http()
            .delete(cluster.kv(k % 2, &format!("t{k}"), "w=2"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    // The grace period passes on the two nodes that hold the tombstones; n3, which still holds
    // the live values, has not confirmed them, so nothing may be collected.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for i in 0..2 {
        let tombstones = trees_total(&aae(&cluster, i).await.unwrap(), "tombstones");
        assert_eq!(
            tombstones,
            keys as u64,
            "n{} collected tombstones n3 does not hold",
            i + 1
        );
    }
    // Heal. From now on every quorum read, through every node, finds each key deleted, until
    // the tombstones are gone everywhere, and after.
    cluster.signal(2, "-CONT");
    let started = Instant::now();
    let mut reads = 0;
    let mut gone_at = None;
    while started.elapsed() < Duration::from_secs(90) {
        for k in (0..keys).step_by(7) {
            let i = (k / 7) % 3;
            let resp = http().get(cluster.kv(i, &format!("t{k}"), "r=2")).send().await.unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::NOT_FOUND,
                "t{k} came back through n{}",
                i + 1
            );
            reads += 1;
        }
        let mut left = 0;
        for i in 0..3 {
            left += trees_total(&aae(&cluster, i).await.unwrap(), "keys");
        }
        if left == 0 {
            gone_at.get_or_insert(started.elapsed());
            if started.elapsed() > gone_at.unwrap() + Duration::from_secs(3) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone_at = gone_at.expect("the tombstones were not collected everywhere within 90 s");
    eprintln!("{reads} quorum reads after the heal found every key deleted; every replica's tombstones were gone {gone_at:?} after the heal");
    // With the tombstones gone, nothing anywhere can bring a value back: every key is absent
    // from every single replica (r=1 through each node) as well as from quorum reads.
    for k in 0..keys {
        let resp = http()
            .get(cluster.kv(k % 3, &format!("t{k}"), "r=3"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "t{k} came back");
        for i in 0..3 {
            let resp = http().get(cluster.kv(i, &format!("t{k}"), "r=1")).send().await.unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::NOT_FOUND,
                "t{k} came back on an r=1 read through n{}",
                i + 1
            );
        }
    }
}

/// Hints held for a node that is then removed from the layout go to the keys' replicas in the
/// new layout, instead of waiting out the hint window (3 h) to be dropped. Written with n=2,
/// w=2 while n4 is dead, the keys n4 owned are acknowledged through a hinted copy on a
/// fallback; after `shoal admin remove n4` every such hint is handed on, and every key ends up
/// on exactly its new preference list (the transfer streams it from the surviving replica;
/// the hint adds nothing but must put nothing on a node that does not own the key). A hint
/// can be the only copy of an acknowledged write when the surviving replica fails too.
#[tokio::test(flavor = "multi_thread")]
async fn hints_for_a_removed_node_reach_the_new_owners() {
    let config = format!("{FAST_SWIM}\n[antientropy]\nenabled = false\n");
    let mut cluster = TestCluster::start(4, &config);
    wait_all_alive(&cluster, 4).await;
    cluster.kill9(3);
    cluster.wait_dead(&[0, 1, 2], &["n4"]).await;

    let http = http();
    let (mut keys, mut hinted) = (Vec::new(), 0);
    for i in 0..600 {
        let key = format!("gone-{i}");
        let resp = http
            .put(cluster.kv(i % 3, &key, "n=2&w=2"))
            .body(format!("value-{i}"))
            .send()
            .await
            .unwrap();
        let hint = resp.headers().get("x-shoal-hinted-acks").cloned();
        let status = resp.status();
        assert_eq!(
            status,
            StatusCode::NO_CONTENT,
            "write {key}: {}",
            resp.text().await.unwrap()
        );
        if hint.is_some_and(|v| v != "0") {
            hinted += 1;
        }
        keys.push((key, i));
    }
    let mut held = 0;
    for i in 0..3 {
        held += hints_pending(&aae(&cluster, i).await.unwrap());
    }
    assert!(
        hinted > 0 && held > 0,
        "writes to n4's keys must have left hints ({hinted}, {held})"
    );

    let out = run_shoal(&[
        "admin",
        "remove",
        "n4",
        "--endpoint",
        &format!("http://{}", cluster.nodes[0].http),
    ]);
    assert!(
        out.status.success(),
        "remove n4: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    let delivered = eventually(Duration::from_secs(60), || async {
        let mut left = 0;
        for i in 0..3 {
            left += hints_pending(&aae(&cluster, i).await?);
        }
        (left == 0).then_some(())
    })
    .await;
    assert!(
        delivered.is_some(),
        "the hints held for the removed n4 were not handed on"
    );
    let drained = started.elapsed();
    for (key, i) in &keys {
        let resp = http.get(cluster.kv(i % 3, key, "n=2&r=2")).send().await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "acknowledged {key} lost with n4's removal"
        );
        assert_eq!(resp.text().await.unwrap(), format!("value-{i}"));
    }
    // Past the drop delay, count the copies on each stopped node's disk.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..3 {
        cluster.stop(i);
    }
    let written: Vec<(String, u8)> = keys.iter().map(|(key, _)| (key.clone(), 2)).collect();
    assert_on_preference_lists(&cluster, 3, &written);
    eprintln!(
        "{hinted} of 600 writes (n=2, w=2) left {held} hints for the dead n4; after its removal all were handed on \
         within {:.1} s, and every key is on exactly its 2 new replicas",
        drained.as_secs_f64()
    );
}
