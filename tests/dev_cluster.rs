//! `shoal dev`, the README's first command: it creates certificates and configs, starts a
//! cluster on consecutive ports, survives the death of one node, keeps data across restarts,
//! and stops every node on Ctrl-C.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;

struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn start_dev(dir: &std::path::Path, http: u16, peer: u16, quic: u16) -> Dev {
    let mut child = Command::new(SHOAL)
        .args(["dev", "--nodes", "3", "--dir", path_str(dir)])
        .args([
            "--http-port",
            &http.to_string(),
            "--peer-port",
            &peer.to_string(),
            "--quic-port",
            &quic.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    loop {
        assert!(Instant::now() < deadline, "shoal dev did not come up:\n{seen}");
        match lines.next() {
            Some(Ok(line)) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.starts_with("Ctrl-C stops the cluster") {
                    break;
                }
            }
            _ => panic!("shoal dev ended early:\n{seen}"),
        }
    }
    assert!(seen.contains(&format!("http://127.0.0.1:{}", http + 2)), "{seen}");
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Dev(child)
}

fn node_pids(dir: &std::path::Path, node: &str) -> Vec<String> {
    let pattern = format!("{}/{node}/shoal.toml", path_str(dir));
    let out = Command::new("pgrep").args(["-f", &pattern]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_cluster_serves_survives_a_dead_node_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_block(9, &[0]);
    let (http_port, peer_port, quic_port) = (base, base + 3, base + 6);
    let dev = start_dev(dir.path(), http_port, peer_port, quic_port);
    let http = http();
    let url = |i: u16, key: &str, q: &str| format!("http://127.0.0.1:{}/v1/kv/{key}?{q}", http_port + i);

    let resp = http.put(url(0, "greeting", "w=3")).body("hello").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        http.get(url(2, "greeting", ""))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "hello"
    );

    // kill -9 one node: the dev cluster keeps serving with the other two.
    let pids = node_pids(dir.path(), "n3");
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert!(Command::new("kill").args(["-9", &pids[0]]).status().unwrap().success());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let resp = http.put(url(0, "after", "w=2")).body("v").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT, "w=2 with n3 dead");
    let resp = http
        .put(url(1, "after", "w=3&timeout_ms=1000"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Ctrl-C stops every node.
    drop(dev);
    for node in ["n1", "n2", "n3"] {
        assert!(
            node_pids(dir.path(), node).is_empty(),
            "{node} still running after Ctrl-C"
        );
    }

    // Data stays in DIR: a second start serves the earlier write from every node.
    let _dev = start_dev(dir.path(), http_port, peer_port, quic_port);
    for i in 0..3 {
        let resp = http.get(url(i, "greeting", "r=1")).send().await.unwrap();
        assert_eq!(resp.text().await.unwrap(), "hello", "node {i} after restart");
    }
    eprintln!("shoal dev: served, survived kill -9 of n3, stopped on Ctrl-C, kept data across restarts");
}
