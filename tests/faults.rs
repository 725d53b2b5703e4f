//! Crashes, pauses and restarts of real nodes: acknowledged writes survive `kill -9`, quorums
//! behave as N/W/R promise with a node down or frozen, and read repair heals a stale replica.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill9_of_every_node() {
    let mut cluster = TestCluster::start(3, "");
    let http = http();
    let keys = 300;
    for i in 0..keys {
        let resp = http
            .put(cluster.kv(i % 3, &format!("durable-{i}"), "w=2"))
            .body(format!("value-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "write {i} was not acknowledged");
    }
    // No graceful shutdown, no flush: SIGKILL right after the last acknowledgement.
    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    let mut found = 0;
    for i in 0..keys {
        let resp = http
            .get(cluster.kv((i + 1) % 3, &format!("durable-{i}"), "r=2"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "acknowledged key durable-{i} lost after kill -9"
        );
        assert_eq!(resp.text().await.unwrap(), format!("value-{i}"));
        found += 1;
    }
    eprintln!("{found}/{keys} acknowledged writes readable after kill -9 of all three nodes");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_node_down_w2_r2_succeed_and_w3_names_the_counts() {
    let mut cluster = TestCluster::start(3, "");
    let http = http();
    cluster.kill9(2);
    let resp = http.put(cluster.kv(0, "k1", "w=2&r=2")).body("v").send().await;
    // r is not a write parameter: this must be refused, not ignored.
    assert_eq!(resp.unwrap().status(), StatusCode::BAD_REQUEST);

    for i in 0..20 {
        let resp = http
            .put(cluster.kv(i % 2, &format!("down-{i}"), "w=2"))
            .body("v")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "w=2 with one node down");
        let resp = http
            .get(cluster.kv((i + 1) % 2, &format!("down-{i}"), "r=2"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "r=2 with one node down");
    }
    let resp = http
        .put(cluster.kv(0, "needs-three", "w=3&timeout_ms=2000"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "quorum_not_reached");
    assert_eq!(body["required"], 3);
    assert_eq!(body["acked"], 2);
    let failed = body["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{body}");
    assert_eq!(failed[0]["node"], "n3");
    let resp = http
        .get(cluster.kv(1, "down-0", "r=3&timeout_ms=2000"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!((body["required"].as_u64(), body["acked"].as_u64()), (Some(3), Some(2)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_node_costs_no_more_than_the_deadline() {
    let cluster = TestCluster::start(3, "");
    let http = http();
    cluster.signal(1, "-STOP");
    // W=2 completes on the two live replicas without waiting for the frozen one.
    let started = std::time::Instant::now();
    let resp = http
        .put(cluster.kv(0, "paused", "w=2&timeout_ms=3000"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "w=2 should not wait for the paused node"
    );
    // W=3 cannot complete: a 503 at the deadline, naming the frozen node.
    let resp = http
        .put(cluster.kv(2, "paused", "w=3&timeout_ms=1000"))
        .body("v2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["failed"][0]["node"], "n2", "{body}");
    cluster.signal(1, "-CONT");
    // Once resumed, the node serves again and holds both writes.
    let got = eventually(Duration::from_secs(10), || async {
        let resp = http
            .get(cluster.kv(1, "paused", "r=3&timeout_ms=1000"))
            .header("accept", "application/json")
            .send()
            .await
            .ok()?;
        (resp.status() == StatusCode::MULTIPLE_CHOICES || resp.status() == StatusCode::OK).then_some(())?;
        let body: serde_json::Value = resp.json().await.ok()?;
        Some(body["siblings"].as_array()?.len())
    })
    .await;
    // "v" and "v2" were blind writes, so both survive as siblings.
    assert_eq!(got, Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn read_repair_heals_a_replica_that_missed_writes() {
    let mut cluster = TestCluster::start(3, "");
    let http = http();
    cluster.kill9(2);
    for i in 0..20 {
        let resp = http
            .put(cluster.kv(0, &format!("rr-{i}"), "w=2"))
            .body(format!("v{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    cluster.restart(2);
    // Reading with r=3 merges all three replies and repairs n3, which had nothing.
    for i in 0..20 {
        let resp = http.get(cluster.kv(2, &format!("rr-{i}"), "r=3")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // With the other two gone, n3 alone answers (n=3, r=1): it must have been repaired.
    cluster.kill9(0);
    cluster.kill9(1);
    for i in 0..20 {
        let resp = http.get(cluster.kv(2, &format!("rr-{i}"), "r=1")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "rr-{i} was not read-repaired onto n3");
        assert_eq!(resp.text().await.unwrap(), format!("v{i}"));
    }
}

/// A node restarted right after `kill -9` is reachable from its peers at once, long before SWIM
/// could declare it dead (4 s at the earliest with the default probe interval). Its peers'
/// pooled QUIC connections are to the dead process; the restarted one answers their packets
/// with a stateless reset (its reset and connection-ID keys are derived from the cluster
/// secret, so they survive the restart), and the peers re-dial. Regression: with random keys
/// the restarted node silently dropped the packets and every request to it from a peer timed
/// out until SWIM declared it dead and the connection was forgotten.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_restarted_after_kill9_is_reachable_at_once() {
    let mut cluster = TestCluster::start(3, "");
    let http = http();
    // Warm every pooled connection, n1's to n3 among them.
    for i in 0..30 {
        let resp = http
            .put(cluster.kv(i % 3, &format!("warm-{i}"), "w=3"))
            .body("v")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    cluster.restart(2);
    // Each request gives up after 1.5 s: a peer still on the dead connection would not make it.
    for i in 0..30 {
        let resp = http
            .get(cluster.kv(i % 2, &format!("warm-{i}"), "r=3&timeout_ms=1500"))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "r=3 read {i} through n{} after n3's restart: {body}",
            i % 2 + 1
        );
    }
    let st = cluster.status(0).await.unwrap();
    assert_ne!(
        liveness_of(&st, "n3").as_deref(),
        Some("dead"),
        "n1 must not have needed to declare n3 dead: {st}"
    );
}
