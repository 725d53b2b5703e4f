//! Get, put and delete through real three-node clusters, over HTTP, QUIC and the CLI.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;

const CTX: &str = "x-shoal-context";

#[tokio::test(flavor = "multi_thread")]
async fn every_valid_nwr_round_trips() {
    let cluster = TestCluster::start(3, "");
    let http = http();
    let mut checked = 0;
    for n in 1..=3u8 {
        for w in 1..=n {
            for r in 1..=n {
                let key = format!("nwr-{n}-{w}-{r}");
                let value = format!("value for n={n} w={w} r={r}");
                let writer = (n + w + r) as usize % 3;
                let reader = (writer + 1) % 3;
                let put = http
                    .put(cluster.kv(writer, &key, &format!("n={n}&w={w}")))
                    .body(value.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    put.status(),
                    StatusCode::NO_CONTENT,
                    "put n={n} w={w}: {:?}",
                    put.text().await
                );
                assert!(put.headers().contains_key(CTX));
                let read = || async {
                    let resp = http
                        .get(cluster.kv(reader, &key, &format!("n={n}&r={r}")))
                        .send()
                        .await
                        .unwrap();
                    match resp.status() {
                        StatusCode::OK => Some(resp.text().await.unwrap()),
                        StatusCode::NOT_FOUND => None,
                        other => panic!("get n={n} r={r}: {other} {:?}", resp.text().await),
                    }
                };
                if r + w > n {
                    // Overlapping quorums: the very first read through another node sees the write.
                    assert_eq!(read().await.as_deref(), Some(value.as_str()), "n={n} w={w} r={r}");
                } else {
                    // Partial quorums are eventually consistent: the write reaches every replica soon.
                    let got = eventually(Duration::from_secs(5), read).await;
                    assert_eq!(got.as_deref(), Some(value.as_str()), "n={n} w={w} r={r}");
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 1 + 4 + 9, "every (n, w, r) with 1 <= w, r <= n <= 3");
    eprintln!("checked {checked} (n, w, r) combinations");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_become_siblings_and_a_context_resolves_them() {
    let cluster = TestCluster::start(3, "");
    let http = http();
    for (node, v) in [(0, "from-a"), (1, "from-b")] {
        let resp = http.put(cluster.kv(node, "sib", "")).body(v).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    let resp = http.get(cluster.kv(2, "sib", "r=3")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::MULTIPLE_CHOICES);
    let header_ctx = resp.headers()[CTX].to_str().unwrap().to_string();
    let body: serde_json::Value = resp.json().await.unwrap();
    let mut siblings: Vec<String> = body["siblings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(s.as_str().unwrap())
                .unwrap();
            String::from_utf8(raw).unwrap()
        })
        .collect();
    siblings.sort();
    assert_eq!(siblings, vec!["from-a", "from-b"]);
    assert_eq!(body["context"].as_str().unwrap(), header_ctx);

    // A write carrying the merged context replaces exactly the two siblings it saw.
    let resp = http
        .put(cluster.kv(1, "sib", "w=3"))
        .header(CTX, &header_ctx)
        .body("resolved")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.headers()["x-shoal-siblings"], "1");
    for node in 0..3 {
        let resp = http.get(cluster.kv(node, "sib", "r=3")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.text().await.unwrap(), "resolved");
    }
    // With Accept: application/json a single value comes in the JSON form too.
    let resp = http
        .get(cluster.kv(0, "sib", ""))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["siblings"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_with_context_then_get_is_404() {
    let cluster = TestCluster::start(3, "");
    let http = http();
    let resp = http
        .put(cluster.kv(0, "gone", ""))
        .body("soon deleted")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = http.get(cluster.kv(1, "gone", "")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ctx = resp.headers()[CTX].to_str().unwrap().to_string();
    let resp = http
        .delete(cluster.kv(2, "gone", "w=3"))
        .header(CTX, &ctx)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for node in 0..3 {
        let resp = http.get(cluster.kv(node, "gone", "r=3")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "node {node}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "not_found");
    }
    // A key that never existed is a 404 too.
    let resp = http.get(cluster.kv(0, "never-written", "")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn quic_client_and_cli_round_trip() {
    let cluster = TestCluster::start(3, "");
    let ca = cluster.certs().join("ca.pem");
    let endpoint = format!("quic://{}", cluster.nodes[1].quic);
    let client = shoal_client::Client::connect(&endpoint, Some(&ca)).await.unwrap();
    let opts = shoal_client::Options {
        n: Some(3),
        w: Some(3),
        r: Some(3),
        ..Default::default()
    };
    let written = client.put(b"quic-key", "over quic".into(), None, &opts).await.unwrap();
    assert_eq!(written.acks, 3);
    match client.get(b"quic-key", &opts).await.unwrap() {
        shoal_client::Read::Found { values, .. } => assert_eq!(values, vec![bytes::Bytes::from("over quic")]),
        other => panic!("expected the value, got {other:?}"),
    }
    // The same key through HTTP on another node.
    let resp = http().get(cluster.kv(2, "quic-key", "")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "over quic");

    // QUIC errors carry the same JSON-able ApiError as HTTP.
    let bad = shoal_client::Options {
        n: Some(2),
        w: Some(3),
        ..Default::default()
    };
    match client.put(b"k", "v".into(), None, &bad).await {
        Err(shoal_client::ClientError::Api(e)) => assert_eq!((e.status, e.param.as_deref()), (400, Some("w"))),
        other => panic!("expected a 400, got {other:?}"),
    }

    // The CLI: put, then get through QUIC, then delete with the printed context.
    let http_ep = format!("http://{}", cluster.nodes[0].http);
    let out = run_shoal(&["kv", "put", "cli-key", "cli-value", "--endpoint", &http_ep, "--w", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run_shoal(&["kv", "get", "cli-key", "--endpoint", &endpoint, "--ca", path_str(&ca)]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("cli-value\n"), "{stdout}");
    let ctx = stdout
        .lines()
        .find_map(|l| l.strip_prefix("context: "))
        .expect("a context line")
        .to_string();
    let out = run_shoal(&["kv", "delete", "cli-key", "--endpoint", &http_ep, "--context", &ctx]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run_shoal(&["kv", "get", "cli-key", "--endpoint", &http_ep, "--r", "3"]);
    assert_eq!(out.status.code(), Some(1), "a deleted key exits 1");
    assert!(String::from_utf8_lossy(&out.stdout).contains("not found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_status_metrics_and_health() {
    let mut cluster = TestCluster::start(3, "");
    let http = http();
    assert_eq!(
        http.get(cluster.url(0, "/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    http.put(cluster.kv(0, "m", "")).body("x").send().await.unwrap();
    let metrics = cluster.metrics(0).await;
    assert!(metrics.contains("shoal_request_duration_seconds"), "{metrics}");

    // Let SWIM hear from every node first: a node it never heard from is "unknown", not dead.
    let converged = eventually(Duration::from_secs(20), || async {
        let status = cluster.status(0).await?;
        let members = status["members"].as_array()?.clone();
        members.iter().all(|m| m["liveness"] == "alive").then_some(())
    })
    .await;
    assert!(
        converged.is_some(),
        "SWIM never saw all three nodes alive:\n{}",
        cluster.log(0)
    );
    cluster.kill9(2);
    // SWIM suspects the killed node within a few probe intervals.
    let status = eventually(Duration::from_secs(30), || async {
        let status = cluster.status(0).await?;
        let n3 = liveness_of(&status, "n3")?;
        (n3 == "suspect" || n3 == "dead").then_some(status)
    })
    .await
    .unwrap_or_else(|| panic!("n1 never suspected the killed n3:\n{}", cluster.log(0)));
    assert_eq!(status["node"]["id"], "n1");
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    let member = |id: &str| members.iter().find(|m| m["id"] == id).unwrap().clone();
    assert_eq!(member("n1")["liveness"], "alive");
    assert_eq!(member("n2")["liveness"], "alive");
    assert_eq!(
        member("n3")["admin_state"],
        "member",
        "a dead node stays a member until removed"
    );
    let n3_liveness = member("n3")["liveness"].as_str().unwrap().to_string();
    let replicated: u64 = members
        .iter()
        .map(|m| m["partitions_replicated"].as_u64().unwrap())
        .sum();
    assert_eq!(
        replicated,
        3 * 1024,
        "with n=3 of 3 nodes every node replicates every partition"
    );

    // n2 hears of the suspicion by gossip (or suspects n3 itself) a moment after n1 does:
    // ask its table until it shows it.
    let endpoint = format!("http://{}", cluster.nodes[1].http);
    let mut table = String::new();
    let shown = eventually(Duration::from_secs(15), || {
        let out = run_shoal(&["admin", "status", "--endpoint", &endpoint]);
        assert!(out.status.success());
        table = String::from_utf8_lossy(&out.stdout).to_string();
        let n3_row = table.lines().find(|l| l.starts_with("n3")).unwrap_or_default();
        let seen = n3_row.contains("suspect") || n3_row.contains("dead");
        async move { seen.then_some(()) }
    })
    .await;
    assert!(
        shown.is_some(),
        "n2's status table never showed n3 as {n3_liveness} or worse: {table}"
    );
}

/// `GET /v1/admin/replica/{key}` answers with the asked node's own copy, not a quorum's: a key
/// written with n=1 is on its one preferred node only, though a read through any node finds
/// it; with n=3 every node lists the same sibling (same dot), and after a delete the same
/// tombstone.
#[tokio::test(flavor = "multi_thread")]
async fn admin_replica_shows_one_nodes_own_copy() {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let cluster = TestCluster::start(3, "");
    let http = http();
    let layout = layout_of(3);
    let preferred = layout.preference_list(layout.partition_of(b"solo"), 1)[0].to_string();

    let resp = http
        .put(cluster.kv(0, "solo", "n=1&w=1"))
        .body("one")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let mut holders = Vec::new();
    for i in 0..3 {
        let got = cluster.replica(i, "solo", 1).await.expect("replica answers");
        assert_eq!(got["node"], cluster.nodes[i].id, "{got}");
        assert_eq!(
            (got["n"].as_u64(), got["changing"].as_bool()),
            (Some(1), Some(false)),
            "{got}"
        );
        assert_eq!(got["preference_list"], serde_json::json!([preferred]), "{got}");
        if !got["object"].is_null() {
            let sibs = got["object"]["siblings"].as_array().unwrap();
            assert_eq!(sibs.len(), 1, "{got}");
            assert_eq!(engine.decode(sibs[0]["value"].as_str().unwrap()).unwrap(), b"one");
            holders.push(cluster.nodes[i].id.clone());
        }
        // A read through the same node finds it either way.
        let resp = http.get(cluster.kv(i, "solo", "n=1&r=1")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(holders, [preferred], "only the preferred node holds an n=1 key");

    let resp = http
        .put(cluster.kv(1, "all", "n=3&w=3"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let ctx = resp.headers()[CTX].to_str().unwrap().to_string();
    let copies = every_copy(&cluster, "all").await;
    for c in &copies {
        assert_eq!(c["object"]["deleted"], false, "{c}");
        assert_eq!(c["object"]["siblings"].as_array().map(Vec::len), Some(1), "{c}");
        assert_eq!(c["object"]["siblings"], copies[0]["object"]["siblings"], "{copies:?}");
        assert_eq!(c["preference_list"], copies[0]["preference_list"], "{copies:?}");
    }
    let resp = http
        .delete(cluster.kv(2, "all", "n=3&w=3"))
        .header(CTX, ctx)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let copies = every_copy(&cluster, "all").await;
    for c in &copies {
        assert_eq!(c["object"]["deleted"], true, "{c}");
        let sibs = c["object"]["siblings"].as_array().unwrap();
        assert_eq!(sibs.len(), 1, "{c}");
        assert!(sibs[0]["value"].is_null(), "a tombstone has no value: {c}");
        assert_eq!(c["object"]["siblings"], copies[0]["object"]["siblings"], "{copies:?}");
    }

    assert!(cluster.replica(0, "never-written", 3).await.unwrap()["object"].is_null());
    for bad in ["n=4", "n=0", "r=1"] {
        let resp = http
            .get(cluster.url(0, &format!("/v1/admin/replica/all?{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// Every node's `/v1/admin/replica` answer for `key` with n=3.
async fn every_copy(cluster: &TestCluster, key: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for i in 0..3 {
        out.push(cluster.replica(i, key, 3).await.expect("replica answers"));
    }
    out
}
