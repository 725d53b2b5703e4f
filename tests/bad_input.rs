//! Bad input from clients and peers gets a clear error, never a crash: parameters, size
//! limits, forged contexts, garbage datagrams, garbage frames from an authenticated peer, and
//! a peer holding a certificate from another CA.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use reqwest::StatusCode;

async fn expect_error(resp: reqwest::Response, status: StatusCode, error: &str, param: &str) -> serde_json::Value {
    assert_eq!(resp.status(), status);
    let body: serde_json::Value = resp.json().await.expect("errors are JSON");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["param"], param, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parameters_and_limits_get_4xx_json() {
    let mut cluster = TestCluster::start(3, "[limits]\nmax_key_bytes = 64\nmax_value_bytes = 65536\n");
    let http = http();
    let put = |q: &str| http.put(cluster.kv(0, "k", q)).body("v").send();
    expect_error(
        put("n=2&w=3").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        "w",
    )
    .await;
    expect_error(
        http.get(cluster.kv(0, "k", "r=0")).send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        "r",
    )
    .await;
    let body = expect_error(
        put("n=6&w=1").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        "n",
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("max_n"), "{body}");
    let body = expect_error(
        put("n=4&w=1").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        "n",
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("members"), "{body}");
    expect_error(
        put("w=two").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        "w",
    )
    .await;
    expect_error(
        put("w=-1").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        "w",
    )
    .await;
    expect_error(
        put("timeout_ms=soon").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        "timeout_ms",
    )
    .await;

    let long_key = "k".repeat(65);
    let resp = http.put(cluster.kv(0, &long_key, "")).body("v").send().await.unwrap();
    let body = expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "key_too_large", "max_key_bytes").await;
    assert_eq!(body["limit"], 64);
    let resp = http.get(cluster.kv(1, &long_key, "")).send().await.unwrap();
    expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "key_too_large", "max_key_bytes").await;

    let resp = http
        .put(cluster.kv(0, "big", ""))
        .body(vec![0u8; 65537])
        .send()
        .await
        .unwrap();
    // The body was refused unread, so the connection must not carry another request.
    assert_eq!(resp.headers()["connection"], "close");
    let body = expect_error(
        resp,
        StatusCode::PAYLOAD_TOO_LARGE,
        "value_too_large",
        "max_value_bytes",
    )
    .await;
    assert_eq!(body["limit"], 65536);
    // Exactly at the limit is fine.
    let resp = http
        .put(cluster.kv(0, "big", ""))
        .body(vec![0u8; 65536])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // A garbled token, a token from another cluster (valid shape, wrong signature), and a
    // token with one character changed.
    let good = http
        .put(cluster.kv(0, "ctx", ""))
        .body("v")
        .send()
        .await
        .unwrap()
        .headers()["x-shoal-context"]
        .to_str()
        .unwrap()
        .to_string();
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let forged = "AW9mb3JnZWQtY29udGV4dC10b2tlbi1wYXlsb2Fk"; // base64url, not signed by this cluster
    for token in ["not a token!", "%%%", forged, std::str::from_utf8(&flipped).unwrap()] {
        let resp = http
            .put(cluster.kv(0, "ctx", ""))
            .header("x-shoal-context", token)
            .body("v")
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::BAD_REQUEST, "invalid_context", "context").await;
        let resp = http
            .delete(cluster.kv(1, "ctx", ""))
            .header("x-shoal-context", token)
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::BAD_REQUEST, "invalid_context", "context").await;
    }
    let resp = http
        .put(cluster.kv(0, "ctx", ""))
        .header("x-shoal-context", &good)
        .body("v2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT, "the genuine token still works");

    for i in 0..3 {
        assert!(cluster.alive(i), "node {i} died:\n{}", cluster.log(i));
        assert!(
            !cluster.log(i).contains("panicked"),
            "node {i} panicked:\n{}",
            cluster.log(i)
        );
    }
}

fn peer_client_endpoint(ca: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> quinn::Endpoint {
    let files = shoal_net::TlsFiles {
        ca_cert: ca.into(),
        node_cert: cert.into(),
        node_key: key.into(),
    };
    let tls = shoal_net::tls::peer_client_config(&files).unwrap();
    let cc = shoal_net::TransportTuning::default().client_config(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(cc);
    ep
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_on_the_quic_ports_does_not_take_a_node_down() {
    let mut cluster = TestCluster::start(3, "");
    let http = http();
    let target = cluster.nodes[0].peer;

    // 1. Random datagrams at the peer and client QUIC ports.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for i in 0..2000usize {
        let len = 1 + (i * 37) % 1400;
        let payload: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        sock.send_to(&payload, target).unwrap();
        sock.send_to(&payload, cluster.nodes[0].quic).unwrap();
    }

    // 2. An authenticated peer (a cluster certificate) sending malformed frames.
    let certs = cluster.certs();
    let ep = peer_client_endpoint(&certs.join("ca.pem"), &certs.join("n2.pem"), &certs.join("n2.key"));
    let conn = ep
        .connect(target, shoal_net::SERVER_NAME)
        .unwrap()
        .await
        .expect("a cluster certificate is accepted");
    let frames: Vec<Vec<u8>> = vec![
        b"hello".to_vec(),
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3], // claims 4 GiB
        vec![0, 0, 0, 4, 1, 0xc1, 0xc1, 0xc1], // right version, undecodable msgpack
        vec![0, 0, 0, 3, 99, 0, 0],            // unknown frame version
        vec![0, 0, 0, 100, 1, 2],              // truncated
    ];
    for f in &frames {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(f).await.unwrap();
        let _ = send.finish();
        // The node drops the stream: no response, no crash.
        let answer = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024)).await;
        assert!(
            !matches!(answer, Ok(Ok(ref v)) if !v.is_empty()),
            "a malformed frame got an answer: {answer:?}"
        );
    }

    // 3. A peer with a certificate from a different CA cannot even finish the handshake.
    let other = tempfile::tempdir().unwrap();
    let o = other.path().to_str().unwrap();
    assert!(run_shoal(&["cert", "init", "--dir", o]).status.success());
    assert!(run_shoal(&["cert", "node", "--dir", o, "--id", "intruder"])
        .status
        .success());
    // Trust the real CA (so the client accepts the node) but present the foreign certificate.
    let ep2 = peer_client_endpoint(
        &certs.join("ca.pem"),
        &other.path().join("intruder.pem"),
        &other.path().join("intruder.key"),
    );
    let refused = match ep2.connect(target, shoal_net::SERVER_NAME).unwrap().await {
        Err(_) => true,
        // TLS 1.3 may complete on the client side before the server rejects the certificate;
        // then the first stream fails.
        Ok(c) => {
            let pool_try = async {
                let (mut s, mut r) = c.open_bi().await.ok()?;
                s.write_all(&[0, 0, 0, 1, 1]).await.ok()?;
                s.finish().ok()?;
                r.read_to_end(1024).await.ok()
            };
            tokio::time::timeout(Duration::from_secs(5), pool_try)
                .await
                .ok()
                .flatten()
                .is_none()
        }
    };
    assert!(refused, "a peer from another CA must be refused");

    // The node is alive and still serves reads and writes.
    let resp = http
        .put(cluster.kv(0, "after-garbage", "w=3"))
        .body("still here")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = http.get(cluster.kv(0, "after-garbage", "r=3")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "still here");
    assert!(cluster.alive(0));
    let log = cluster.log(0);
    assert!(
        log.contains("dropping malformed frame"),
        "malformed frames are logged:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}
