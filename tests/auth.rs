//! Security on real processes: bearer tokens and scopes on HTTP, QUIC and the CLI, the audit
//! log, per-client limits, and a node holding a certificate from another CA.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use shoal_client::{ClientError, ClientRequest, ClientResponse, Options, Read as KvRead};

/// SWIM and transfer settings that keep a join short (as in tests/membership.rs).
const FAST: &str = "[swim]\nprobe_interval_ms = 500\nprobe_timeout_ms = 200\npush_pull_interval_ms = 5000\n\n\
                    [transfer]\ndrop_delay_ms = 1500\n";

/// A principal made with `shoal auth token`: its token, and the file holding it.
struct Principal {
    token: String,
    file: PathBuf,
}

/// Create a token with `shoal auth token`, append its entry to `tokens_file`, and keep the
/// token in `dir/NAME.token`, as an operator would.
fn make_token(dir: &Path, tokens_file: &Path, name: &str, scopes: &str) -> Principal {
    let out = run_shoal(&["auth", "token", "--name", name, "--scopes", scopes]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.len(), 43, "a 256-bit base64url token alone on stdout: {token:?}");
    let entry = String::from_utf8(out.stderr).unwrap();
    assert!(entry.contains(&format!("name = \"{name}\"")), "{entry}");
    assert!(
        !entry.contains(&token),
        "the tokens-file entry must not hold the token itself"
    );
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(tokens_file)
        .unwrap();
    writeln!(f, "{entry}").unwrap();
    let file = dir.join(format!("{name}.token"));
    std::fs::write(&file, format!("{token}\n")).unwrap();
    Principal { token, file }
}

async fn expect_error(resp: reqwest::Response, status: StatusCode, error: &str) -> serde_json::Value {
    assert_eq!(resp.status(), status);
    let body: serde_json::Value = resp.json().await.expect("errors are JSON");
    assert_eq!(body["error"], error, "{body}");
    body
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// Run `shoal ARGS` with `envs`, off the async workers.
async fn shoal_with(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let envs: Vec<(String, String)> = envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        let mut c = Command::new(SHOAL);
        c.args(&args).env_remove("SHOAL_TOKEN").env_remove("SHOAL_TOKEN_FILE");
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    })
    .await
    .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The ids of the members node `i` lists, asked with an admin token.
async fn member_ids(cluster: &TestCluster, i: usize, admin: &str) -> Vec<String> {
    let st: serde_json::Value = http()
        .get(cluster.url(i, "/v1/admin/status"))
        .header("authorization", bearer(admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    st["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_scopes_on_http_quic_and_the_cli() {
    let keys = tempfile::tempdir().unwrap();
    let tokens = keys.path().join("tokens.toml");
    let reader = make_token(keys.path(), &tokens, "reader", "read");
    let writer = make_token(keys.path(), &tokens, "writer", "read,write");
    let ops = make_token(keys.path(), &tokens, "ops", "admin");
    let extra = format!(
        "{FAST}\n[auth]\nenabled = true\ntokens_file = {:?}\n",
        tokens.display().to_string()
    );
    let mut cluster = TestCluster::start_with(4, 3, &extra);
    let http = http();

    // /healthz stays open for probes.
    let resp = http.get(cluster.url(0, "/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // No token, a wrong token, another scheme: 401 with WWW-Authenticate.
    for auth in [
        None,
        Some(bearer("not-a-token")),
        Some(bearer(&format!("{}x", reader.token))),
        Some("Basic cm9vdDpyb290".into()),
    ] {
        let mut req = http.get(cluster.kv(0, "k", ""));
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(challenge.is_some_and(|c| c.starts_with("Bearer")), "{auth:?}");
        expect_error(resp, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        let resp = http.put(cluster.kv(1, "k", "")).body("v").send().await.unwrap();
        expect_error(resp, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
    let resp = http.get(cluster.url(0, "/metrics")).send().await.unwrap();
    expect_error(resp, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let resp = http.get(cluster.url(0, "/v1/admin/status")).send().await.unwrap();
    expect_error(resp, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    // read: may GET (and scrape metrics), may not PUT.
    let resp = http
        .get(cluster.kv(0, "k", ""))
        .header("authorization", bearer(&reader.token))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::NOT_FOUND, "not_found").await;
    let resp = http
        .put(cluster.kv(0, "k", ""))
        .header("authorization", bearer(&reader.token))
        .body("v")
        .send()
        .await
        .unwrap();
    let body = expect_error(resp, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(body["required_scope"], "write", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("needs scope write"),
        "{body}"
    );
    let resp = http
        .get(cluster.url(0, "/metrics"))
        .header("authorization", bearer(&reader.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("shoal_"));

    // write: may PUT and DELETE, may not administer.
    let resp = http
        .put(cluster.kv(0, "k", "w=3"))
        .header("authorization", bearer(&writer.token))
        .body("v1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = http
        .get(cluster.kv(2, "k", ""))
        .header("authorization", bearer(&reader.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "v1");
    let resp = http
        .get(cluster.url(0, "/v1/admin/status"))
        .header("authorization", bearer(&writer.token))
        .send()
        .await
        .unwrap();
    let body = expect_error(resp, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(body["required_scope"], "admin", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("needs scope admin"),
        "{body}"
    );
    for path in ["/v1/admin/leave", "/v1/admin/remove?node=n3"] {
        let resp = http
            .post(cluster.url(0, path))
            .header("authorization", bearer(&writer.token))
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // admin does not imply read.
    let resp = http
        .get(cluster.kv(0, "k", ""))
        .header("authorization", bearer(&ops.token))
        .send()
        .await
        .unwrap();
    let body = expect_error(resp, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(body["required_scope"], "read", "{body}");
    assert_eq!(
        member_ids(&cluster, 0, &ops.token).await.len(),
        3,
        "the refused leave changed nothing"
    );

    // QUIC: the same answers, through the Rust client.
    let ca = cluster.certs().join("ca.pem");
    let quic = format!("quic://{}", cluster.nodes[1].quic);
    let connect = |token: Option<&str>| {
        let (quic, ca, token) = (quic.clone(), ca.clone(), token.map(str::to_string));
        async move {
            shoal_client::Client::connect(&quic, Some(&ca))
                .await
                .unwrap()
                .with_token(token)
        }
    };
    let status_of = |e: ClientError| match e {
        ClientError::Api(api) => (api.status, api.error, api.required_scope),
        other => panic!("expected an API error, got {other}"),
    };
    let opts = Options::default();
    let anon = connect(None).await;
    assert_eq!(
        status_of(anon.get(b"k", &opts).await.unwrap_err()),
        (401, "unauthenticated".into(), None)
    );
    let wrong = connect(Some("not-a-token")).await;
    assert_eq!(
        status_of(wrong.put(b"k", "x".into(), None, &opts).await.unwrap_err()),
        (401, "unauthenticated".into(), None)
    );
    let ro = connect(Some(&reader.token)).await;
    assert_eq!(
        status_of(ro.put(b"k", "x".into(), None, &opts).await.unwrap_err()),
        (403, "forbidden".into(), Some("write".into()))
    );
    match ro.get(b"k", &opts).await.unwrap() {
        KvRead::Found { values, .. } => assert_eq!(values, vec![bytes::Bytes::from("v1")]),
        other => panic!("{other:?}"),
    }
    let rw = connect(Some(&writer.token)).await;
    rw.put(b"quic-key", "q".into(), None, &Options { w: Some(3), ..opts })
        .await
        .expect("a write token writes over QUIC");

    // The CLI: SHOAL_TOKEN, --token-file, SHOAL_TOKEN_FILE; and no flag that takes the secret.
    let ep0 = format!("http://{}", cluster.nodes[0].http);
    let out = shoal_with(&["kv", "get", "quic-key", "--endpoint", &ep0], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("unauthenticated"), "{}", text(&out));
    let out = shoal_with(
        &["kv", "get", "quic-key", "--endpoint", &ep0],
        &[("SHOAL_TOKEN", &reader.token)],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("q\n"),
        "{}",
        text(&out)
    );
    let ca_s = ca.to_str().unwrap();
    let out = shoal_with(
        &[
            "kv",
            "put",
            "cli-key",
            "c",
            "--endpoint",
            &quic,
            "--ca",
            ca_s,
            "--token-file",
            path_str(&writer.file),
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = shoal_with(
        &["kv", "get", "cli-key", "--endpoint", &ep0],
        &[("SHOAL_TOKEN_FILE", path_str(&reader.file))],
    )
    .await;
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("c\n"),
        "{}",
        text(&out)
    );
    let out = shoal_with(
        &["kv", "get", "cli-key", "--endpoint", &ep0, "--token", &reader.token],
        &[],
    )
    .await;
    assert!(!out.status.success(), "a secret on the command line must be refused");
    let out = shoal_with(
        &["admin", "status", "--endpoint", &ep0],
        &[("SHOAL_TOKEN", &writer.token)],
    )
    .await;
    assert!(
        !out.status.success() && text(&out).contains("forbidden"),
        "{}",
        text(&out)
    );
    let out = shoal_with(
        &[
            "admin",
            "status",
            "--endpoint",
            &ep0,
            "--token-file",
            path_str(&ops.file),
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("MEMBER"), "{}", text(&out));

    // An admin token can grow and shrink the cluster: n4 joins, then is asked to leave.
    cluster.spawn(3);
    cluster.wait_ready(3);
    let ep3 = format!("http://{}", cluster.nodes[3].http);
    let seed = cluster.nodes[0].peer.to_string();
    let out = shoal_with(
        &["admin", "join", &seed, "--endpoint", &ep3],
        &[("SHOAL_TOKEN", &writer.token)],
    )
    .await;
    assert!(
        !out.status.success() && text(&out).contains("forbidden"),
        "{}",
        text(&out)
    );
    let out = shoal_with(
        &["admin", "join", &seed, "--endpoint", &ep3],
        &[("SHOAL_TOKEN", &ops.token)],
    )
    .await;
    assert!(text(&out).contains("done: layout epoch"), "{}", text(&out));
    assert_eq!(member_ids(&cluster, 0, &ops.token).await.len(), 4);
    let out = shoal_with(
        &[
            "admin",
            "leave",
            "--endpoint",
            &ep3,
            "--no-wait",
            "--token-file",
            path_str(&ops.file),
        ],
        &[],
    )
    .await;
    assert!(text(&out).contains("accepted: leave n4"), "{}", text(&out));

    // The audit log names who did what, and who was refused.
    let (audit0, audit3) = (cluster.log(0), cluster.log(3));
    let line = |log: &str, needles: &[&str]| {
        log.lines()
            .any(|l| l.contains("shoal::audit") && needles.iter().all(|n| l.contains(n)))
    };
    assert!(
        line(&audit3, &["principal=\"ops\"", "action=\"join\"", "accepted at epoch"]),
        "{audit3}"
    );
    assert!(line(&audit3, &["principal=\"ops\"", "action=\"leave\""]), "{audit3}");
    assert!(
        line(
            &audit3,
            &["principal=\"writer\"", "refused: 403 forbidden", "/v1/admin/join"]
        ),
        "{audit3}"
    );
    assert!(
        line(
            &audit0,
            &[
                "principal=\"writer\"",
                "refused: 403 forbidden",
                "/v1/admin/leave",
                "source=127.0.0.1:"
            ]
        ),
        "{audit0}"
    );
    assert!(
        line(
            &audit0,
            &["principal=\"unauthenticated\"", "refused: 401", "/v1/admin/status"]
        ),
        "{audit0}"
    );
    assert!(
        !audit0.contains(&reader.token) && !audit0.contains(&writer.token),
        "tokens never reach the log"
    );
}

/// Read one HTTP/1.1 response from a kept-alive connection: (status, lower-cased head, body).
fn read_response(s: &mut TcpStream) -> (u16, String, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).unwrap();
        assert!(
            n == 1,
            "connection closed mid-response: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

fn request(s: &mut TcpStream, raw: &str) -> (u16, String, String) {
    s.write_all(raw.as_bytes()).unwrap();
    read_response(s)
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

async fn quic_call(conn: &quinn::Connection, key: &str) -> ClientResponse {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let env = shoal_net::Envelope {
        id: 1,
        timeout_ms: 5000,
        body: ClientRequest::Get {
            key: bytes::Bytes::copy_from_slice(key.as_bytes()),
            n: None,
            r: None,
            timeout_ms: None,
            sloppy: None,
            token: None,
        },
    };
    shoal_net::write_frame(&mut send, &env, 1 << 20).await.unwrap();
    send.finish().unwrap();
    let answer: shoal_net::Envelope<ClientResponse> = shoal_net::read_frame(&mut recv, 1 << 20).await.unwrap();
    answer.body
}

fn expect_429(response: ClientResponse, limit: &str) {
    match response {
        ClientResponse::Error(e) => {
            assert_eq!((e.status, e.error.as_str()), (429, "too_many_requests"), "{e}");
            assert!(e.message.contains(limit), "{e}");
        }
        other => panic!("expected 429 naming {limit}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn per_client_limits_answer_429_naming_the_limit() {
    let cluster = TestCluster::start(
        1,
        "[requests]\nn = 1\nw = 1\nr = 1\n\n[limits]\nmax_connections_per_client = 2\nmax_inflight_per_client = 1\n",
    );
    let addr = cluster.nodes[0].http;
    // Let the readiness probe's connection close, so it no longer counts.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // HTTP connections: two are served, a third is answered 429 and closed.
    let (mut a, mut b) = (connect(addr), connect(addr));
    let healthz = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
    assert_eq!(request(&mut a, healthz).0, 200);
    assert_eq!(request(&mut b, healthz).0, 200);
    let mut c = connect(addr);
    let (status, head, body) = request(&mut c, healthz);
    assert_eq!(status, 429, "{head}{body}");
    assert!(
        body.contains("too_many_requests") && body.contains("max_connections_per_client = 2"),
        "{body}"
    );
    assert!(
        head.contains("retry-after: 1") && head.contains("connection: close"),
        "{head}"
    );

    // HTTP in flight: a PUT whose body has not arrived holds the client's one slot.
    a.write_all(b"PUT /v1/kv/slow HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, head, body) = loop {
        // Give the PUT's headers time to reach the server before each probe: a probe in flight
        // when they arrive would take the one slot and get the PUT itself refused.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = request(&mut b, "GET /v1/kv/other HTTP/1.1\r\nhost: x\r\n\r\n");
        if r.0 == 429 || Instant::now() > deadline {
            break r;
        }
    };
    assert_eq!(status, 429, "{head}{body}");
    assert!(body.contains("max_inflight_per_client = 1"), "{body}");
    assert!(head.contains("retry-after: 1"), "{head}");
    a.write_all(b"slow").unwrap();
    assert_eq!(read_response(&mut a).0, 204, "the slow PUT completes");
    let (status, _, body) = request(&mut b, "GET /v1/kv/slow HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, "slow"), "the slot was released");
    let (_, _, metrics) = request(&mut b, "GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n");
    for limit in ["max_connections_per_client", "max_inflight_per_client"] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with("shoal_client_refused_total") && l.contains("api=\"http\"") && l.contains(limit));
        assert!(
            line.is_some_and(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() >= 1.0),
            "refusals are counted for {limit}:\n{metrics}"
        );
    }
    drop((a, b, c));

    // QUIC: two connections are served, a third is refused; an unfinished request holds the
    // one in-flight slot.
    let ca = cluster.certs().join("ca.pem");
    let tls = shoal_net::tls::client_api_client_config(&ca).unwrap();
    let cc = shoal_net::TransportTuning::default().client_config(tls).unwrap();
    let dial = || {
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(cc.clone());
        let quic = cluster.nodes[0].quic;
        async move { ep.connect(quic, shoal_net::SERVER_NAME).unwrap().await.unwrap() }
    };
    let q1 = dial().await;
    let q2 = dial().await;
    assert!(matches!(quic_call(&q1, "slow").await, ClientResponse::Found { .. }));
    assert!(matches!(quic_call(&q2, "slow").await, ClientResponse::Found { .. }));
    let q3 = dial().await;
    expect_429(quic_call(&q3, "slow").await, "max_connections_per_client = 2");
    let (mut held, _held_recv) = q1.open_bi().await.unwrap();
    held.write_all(&[0, 0, 0, 100, 1]).await.unwrap(); // a frame of 100 bytes, 1 sent
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        // As above: let the held stream reach the server before each probe.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = quic_call(&q2, "slow").await;
        if !matches!(r, ClientResponse::Found { .. }) || Instant::now() > deadline {
            break r;
        }
    };
    expect_429(refused, "max_inflight_per_client = 1");
    let _ = held.reset(0u32.into());
}

/// A node whose certificate comes from another CA can neither join nor have a single request
/// answered, even though it trusts the cluster's CA and speaks the protocol correctly.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_a_foreign_ca_certificate_cannot_join() {
    let cluster = TestCluster::start(3, FAST);
    let certs = cluster.certs();
    let other = tempfile::tempdir().unwrap();
    let o = other.path().to_str().unwrap();
    assert!(run_shoal(&["cert", "init", "--dir", o]).status.success());
    assert!(run_shoal(&["cert", "node", "--dir", o, "--id", "intruder"])
        .status
        .success());

    // 1. A well-formed Ping: answered when sent with a cluster certificate, not with the
    //    foreign one.
    let ping = |cert: PathBuf, key: PathBuf| {
        let files = shoal_net::TlsFiles {
            ca_cert: certs.join("ca.pem"),
            node_cert: cert,
            node_key: key,
        };
        let target = cluster.nodes[0].peer;
        async move {
            let tls = shoal_net::tls::peer_client_config(&files).unwrap();
            let cc = shoal_net::TransportTuning::default().client_config(tls).unwrap();
            let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            ep.set_default_client_config(cc);
            let pool = shoal_net::Pool::new(ep, shoal_net::SERVER_NAME, 1 << 20);
            pool.call::<_, shoal_node::peer::PeerResponse>(
                target,
                shoal_node::peer::PeerRequest::Ping,
                Duration::from_secs(5),
            )
            .await
        }
    };
    let answer = ping(certs.join("n2.pem"), certs.join("n2.key")).await;
    assert!(
        matches!(answer, Ok(shoal_node::peer::PeerResponse::Pong { ref node }) if node == "n1"),
        "a cluster certificate's ping is answered: {answer:?}"
    );
    let answer = ping(other.path().join("intruder.pem"), other.path().join("intruder.key")).await;
    assert!(
        answer.is_err(),
        "a foreign certificate's ping must not be answered: {answer:?}"
    );

    // 2. A whole node with the foreign certificate (trusting the real CA) asked to join.
    let dir = other.path().join("node");
    std::fs::create_dir_all(&dir).unwrap();
    let (http, peer, quic) = (free_addr_tcp(), free_addr_udp(), free_addr_udp());
    let config = dir.join("shoal.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nid = \"intruder\"\ndata_dir = \"{data}\"\n\n[listen]\nhttp = \"{http}\"\npeer = \"{peer}\"\nquic = \"{quic}\"\n\n\
             [tls]\nca_cert = \"{ca}\"\nnode_cert = \"{o}/intruder.pem\"\nnode_key = \"{o}/intruder.key\"\n\n{FAST}\n\
             [cluster]\nsecret_file = \"{o}/cluster.secret\"\nseeds = [\"{seed}\"]\n",
            data = dir.join("data").display(),
            ca = certs.join("ca.pem").display(),
            seed = cluster.nodes[0].peer,
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("node.log")).unwrap();
    let mut intruder = Command::new(SHOAL)
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(http).is_err() {
        assert!(Instant::now() < deadline, "the intruder node did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = shoal_with(
        &[
            "admin",
            "join",
            &cluster.nodes[0].peer.to_string(),
            "--endpoint",
            &format!("http://{http}"),
        ],
        &[],
    )
    .await;
    assert!(!out.status.success(), "the join must fail: {}", text(&out));
    // It keeps contacting its seed (SWIM) meanwhile; give it several probe intervals.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        for i in 0..3 {
            let st = cluster.status(i).await.unwrap();
            let ids: Vec<&str> = st["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap())
                .collect();
            assert!(!ids.contains(&"intruder"), "node {i} admitted the intruder: {st}");
            assert_eq!(ids.len(), 3, "{st}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = intruder.kill();
    let _ = intruder.wait();
    assert!(
        cluster.log(0).contains("refused QUIC connection"),
        "the seed logged the refused handshake:\n{}",
        cluster.log(0)
    );
}

fn free_addr_tcp() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn free_addr_udp() -> std::net::SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// With `listen.http_tls_cert`, the HTTP API is HTTPS: the Rust client and the CLI reach it
/// with `https://` and `--ca`, and a plain-HTTP request gets no HTTP answer.
#[tokio::test(flavor = "multi_thread")]
async fn the_http_api_can_be_served_over_tls() {
    let mut cluster = TestCluster::start(1, "[requests]\nn = 1\nw = 1\nr = 1\n");
    let certs = cluster.certs();
    let config = std::fs::read_to_string(&cluster.nodes[0].config).unwrap();
    let config = config.replacen(
        "[tls]",
        &format!(
            "http_tls_cert = \"{}\"\nhttp_tls_key = \"{}\"\n\n[tls]",
            certs.join("n1.pem").display(),
            certs.join("n1.key").display()
        ),
        1,
    );
    std::fs::write(&cluster.nodes[0].config, config).unwrap();
    cluster.stop(0);
    cluster.spawn(0);
    cluster.wait_ready(0);

    let ca = certs.join("ca.pem");
    let https = format!("https://{}", cluster.nodes[0].http);
    let client = shoal_client::Client::connect(&https, Some(&ca)).await.unwrap();
    client
        .put(b"tls-key", "over tls".into(), None, &Options::default())
        .await
        .expect("a put over HTTPS");
    match client.get(b"tls-key", &Options::default()).await.unwrap() {
        KvRead::Found { values, .. } => assert_eq!(values, vec![bytes::Bytes::from("over tls")]),
        other => panic!("{other:?}"),
    }
    assert!(
        shoal_client::Client::connect(&https, None).await.is_err(),
        "https:// without a CA to trust is refused"
    );
    let ca_s = ca.to_str().unwrap();
    let out = shoal_with(&["kv", "get", "tls-key", "--endpoint", &https, "--ca", ca_s], &[]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("over tls\n"),
        "{}",
        text(&out)
    );
    let out = shoal_with(&["admin", "status", "--endpoint", &https, "--ca", ca_s], &[]).await;
    assert!(out.status.success() && text(&out).contains("MEMBER"), "{}", text(&out));

    // Plain HTTP on the TLS port: the handshake fails and no HTTP response comes back.
    let mut s = connect(cluster.nodes[0].http);
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&answer));
}
