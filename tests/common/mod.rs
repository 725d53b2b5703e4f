//! A harness that runs real `shoal serve` processes on loopback: real RocksDB, real QUIC with
//! mutual TLS. Nodes can be killed with SIGKILL, paused with SIGSTOP and restarted.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_ring::{Layout, LayoutRecord, Member, NodeId, RingConfig};

pub const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

pub struct TestNode {
    pub id: String,
    pub http: SocketAddr,
    pub peer: SocketAddr,
    pub quic: SocketAddr,
    pub config: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<TestNode>,
}

/// A loopback port free for both TCP and UDP, from 10000–19999: below Linux's ephemeral range
/// (32768–60999), so no client's outgoing connection can take it between this check and the
/// node's bind (a port the kernel handed out with `:0` can be, and once was, in CI). A
/// process-wide cursor keeps the two test threads from picking the same port.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);
    const LOW: u32 = 10_000;
    const SPAN: u32 = 10_000;
    if CURSOR.load(Ordering::Relaxed) == u32::MAX {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let _ = CURSOR.compare_exchange(
            u32::MAX,
            (std::process::id().wrapping_mul(7919) ^ nanos) % SPAN,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    for _ in 0..SPAN {
        let port = (LOW + CURSOR.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN);
}

fn free_tcp() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

fn free_udp() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A base port such that, for every offset in `groups`, the `count` consecutive TCP and UDP
/// ports from base + offset are free (a local cluster's HTTP, peer and QUIC port ranges).
pub fn free_block(count: u16, groups: &[u16]) -> u16 {
    for attempt in 0..200u16 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let base = 20_000 + (std::process::id() as u16 % 200) * 50 + (nanos % 97) as u16 + attempt * 7;
        let free = groups.iter().all(|g| {
            (0..count).all(|i| {
                let port = base + g + i;
                TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok()
            })
        });
        if free {
            return base;
        }
    }
    panic!("no block of {count} free ports");
}

pub fn run_shoal(args: &[&str]) -> std::process::Output {
    Command::new(SHOAL).args(args).output().expect("running shoal")
}

impl TestCluster {
    /// Start `size` nodes; `extra` is appended to every node's TOML config.
    pub fn start(size: usize, extra: &str) -> TestCluster {
        Self::start_with(size, size, extra)
    }

    /// Prepare `size` nodes of which the first `founders` form the cluster and are started;
    /// the rest have configs with no members (they join later with `shoal admin join`) and
    /// are started with [`TestCluster::spawn`].
    pub fn start_with(size: usize, founders: usize, extra: &str) -> TestCluster {
        let mut cluster = Self::prepare(size, founders, extra);
        for i in 0..founders {
            cluster.spawn(i);
        }
        for i in 0..founders {
            cluster.wait_ready(i);
        }
        cluster
    }

    /// Certificates, ports and configs for `size` nodes, the first `founders` of which form
    /// the cluster, with nothing started: for tests that prepare a node's data directory (a
    /// tmpfs mount, say) first.
    pub fn prepare(size: usize, founders: usize, extra: &str) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let certs_s = certs.to_str().unwrap();
        let out = run_shoal(&["cert", "init", "--dir", certs_s]);
        assert!(
            out.status.success(),
            "cert init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut nodes = Vec::new();
        for i in 0..size {
            let id = format!("n{}", i + 1);
            let out = run_shoal(&["cert", "node", "--dir", certs_s, "--id", &id]);
            assert!(
                out.status.success(),
                "cert node: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let node_dir = dir.path().join(&id);
            std::fs::create_dir_all(&node_dir).unwrap();
            nodes.push(TestNode {
                id,
                http: free_tcp(),
                peer: free_udp(),
                quic: free_udp(),
                config: node_dir.join("shoal.toml"),
                log: node_dir.join("node.log"),
                child: None,
            });
        }
        let members: String = nodes
            .iter()
            .take(founders)
            .map(|n| format!("[[cluster.members]]\nid = \"{}\"\npeer = \"{}\"\n\n", n.id, n.peer))
            .collect();
        for (i, n) in nodes.iter().enumerate() {
            let members = if i < founders { members.as_str() } else { "" };
            let node_dir = n.config.parent().unwrap();
            let config = format!(
                "[node]\nid = \"{id}\"\ndata_dir = \"{data}\"\n\n\
                 [listen]\nhttp = \"{http}\"\npeer = \"{peer}\"\nquic = \"{quic}\"\n\n\
                 [tls]\nca_cert = \"{certs}/ca.pem\"\nnode_cert = \"{certs}/{id}.pem\"\nnode_key = \"{certs}/{id}.key\"\n\n\
                 {extra}\n\n[cluster]\nsecret_file = \"{certs}/cluster.secret\"\n\n{members}",
                id = n.id,
                data = node_dir.join("data").display(),
                http = n.http,
                peer = n.peer,
                quic = n.quic,
                certs = certs_s,
            );
            std::fs::write(&n.config, config).unwrap();
        }
        TestCluster { dir, nodes }
    }

    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let child = Command::new(SHOAL)
            .args(["serve", "--config", node.config.to_str().unwrap()])
            .env(
                "RUST_LOG",
                std::env::var("SHOAL_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning shoal serve");
        node.child = Some(child);
    }

    pub fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (id, http) = (self.nodes[i].id.clone(), self.nodes[i].http);
        loop {
            if let Some(status) = self.nodes[i].child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("{id} exited during start ({status}):\n{}", self.log(i));
            }
            if std::net::TcpStream::connect(http).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "{id} not ready in 30 s:\n{}", self.log(i));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then wait for the process to exit (a graceful stop).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            c.wait().unwrap();
        }
    }

    /// Wait up to `limit` for node `i`'s process to exit on its own; true if it did.
    pub fn wait_exit(&mut self, i: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self.nodes[i].child.as_mut() {
                None => return true,
                Some(c) => {
                    if c.try_wait().unwrap().is_some() {
                        self.nodes[i].child = None;
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.nodes[i].config.parent().unwrap().join("data")
    }

    /// The objects on node `i`'s disk, read with `shoal inspect` (the node must be stopped):
    /// (key, replication factor, deleted).
    pub fn inspect(&self, i: usize) -> Vec<(String, u8, bool)> {
        let out = run_shoal(&["inspect", "--data-dir", path_str(&self.data_dir(i))]);
        assert!(
            out.status.success(),
            "inspect: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["key"].as_str().unwrap().to_string(),
                    v["n"].as_u64().unwrap() as u8,
                    v["deleted"].as_bool().unwrap(),
                )
            })
            .collect()
    }

    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.spawn(i);
        self.wait_ready(i);
    }

    pub fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i].child.as_ref().expect("node running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.nodes[i].child.as_ref().expect("node running").id()
    }

    pub fn alive(&mut self, i: usize) -> bool {
        match self.nodes[i].child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{}", self.nodes[i].http, path)
    }

    pub fn kv(&self, i: usize, key: &str, query: &str) -> String {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        self.url(i, &format!("/v1/kv/{key}{q}"))
    }
}

impl TestCluster {
    /// Node `i`'s JSON answer to `GET path`, or `None` if it does not answer.
    pub async fn get_json(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        http().get(self.url(i, path)).send().await.ok()?.json().await.ok()
    }

    /// Node `i`'s `GET /v1/admin/status`, or `None` if it does not answer.
    pub async fn status(&self, i: usize) -> Option<serde_json::Value> {
        self.get_json(i, "/v1/admin/status").await
    }

    /// Waits until every node in `judges` sees every node in `dead` (by id) as dead, and says
    /// how long SWIM took. The limit is generous: with three nodes there is at most one other
    /// member to confirm a suspicion, so Lifeguard keeps the timeout near its maximum, and a
    /// loaded test machine stretches probe rounds through the local health multiplier.
    pub async fn wait_dead(&self, judges: &[usize], dead: &[&str]) {
        let started = Instant::now();
        let seen = eventually(Duration::from_secs(90), || async {
            for i in judges {
                let s = self.status(*i).await?;
                if !dead.iter().all(|id| liveness_of(&s, id).as_deref() == Some("dead")) {
                    return None;
                }
            }
            Some(())
        })
        .await;
        assert!(seen.is_some(), "SWIM did not declare {dead:?} dead within 90 s");
        eprintln!(
            "SWIM declared {dead:?} dead {:.1} s after the wait began",
            started.elapsed().as_secs_f64()
        );
    }

    /// Node `i`'s own copy of `key` (`GET /v1/admin/replica/{key}`, no quorum), with the key's
    /// preference list for `n` in its layout; `None` if it does not answer with 200.
    pub async fn replica(&self, i: usize, key: &str, n: u8) -> Option<serde_json::Value> {
        let resp = http()
            .get(self.url(i, &format!("/v1/admin/replica/{key}?n={n}")))
            .send()
            .await
            .ok()?;
        if resp.status() != reqwest::StatusCode::OK {
            return None;
        }
        resp.json().await.ok()
    }

    /// Node `i`'s Prometheus text.
    pub async fn metrics(&self, i: usize) -> String {
        http()
            .get(self.url(i, "/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The value of an unlabelled metric in Prometheus text, if present.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The liveness node `id` has in a status answer.
pub fn liveness_of(status: &serde_json::Value, id: &str) -> Option<String> {
    status["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == id)
        .and_then(|m| m["liveness"].as_str().map(str::to_string))
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = Command::new("kill").args(["-CONT", &c.id().to_string()]).status();
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // A failed test keeps its nodes' logs (not their data) for the post-mortem.
        if std::thread::panicking() {
            let name = self
                .dir
                .path()
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let keep = std::env::temp_dir().join(format!("shoal-failed-{name}"));
            if std::fs::create_dir_all(&keep).is_ok() {
                for n in &self.nodes {
                    let _ = std::fs::copy(&n.log, keep.join(format!("{}.log", n.id)));
                }
                eprintln!("node logs kept in {}", keep.display());
            }
        }
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Repeat `f` until it returns Some, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The layout every node derives for members n1..n`size` (equal weights, default ring).
pub fn layout_of(size: usize) -> Arc<Layout> {
    let members = (1..=size)
        .map(|i| Member {
            id: NodeId::new(format!("n{i}")),
            zone: "default".into(),
            weight: 1,
        })
        .collect();
    LayoutRecord::bootstrap(members, RingConfig::default())
        .unwrap()
        .placement()
        .unwrap()
        .current
}

/// Counts each key's copies on the disks of the (stopped) nodes 0..`size` with `shoal inspect`
/// and asserts they are exactly the nodes the `size`-node layout's preference list names for
/// the key's n. Returns how many keys were checked for each n.
pub fn assert_on_preference_lists(cluster: &TestCluster, size: usize, keys: &[(String, u8)]) -> BTreeMap<u8, usize> {
    let layout = layout_of(size);
    let mut holders: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..size {
        for (key, _, _) in cluster.inspect(i) {
            holders.entry(key).or_default().push(cluster.nodes[i].id.clone());
        }
    }
    let mut copies = BTreeMap::new();
    for (key, n) in keys {
        let mut want: Vec<String> = layout
            .preference_list(layout.partition_of(key.as_bytes()), *n as usize)
            .iter()
            .map(|id| id.to_string())
            .collect();
        want.sort();
        let mut have = holders.get(key).cloned().unwrap_or_default();
        have.sort();
        assert_eq!(
            have, want,
            "{key} (n={n}) is on {have:?}, its preference list is {want:?}"
        );
        *copies.entry(*n).or_insert(0) += 1;
    }
    copies
}

/// Waits until each of nodes 0..`size` sees all of them alive (SWIM can only declare dead a
/// node it has met).
pub async fn wait_all_alive(cluster: &TestCluster, size: usize) {
    let all: Vec<usize> = (0..size).collect();
    assert!(
        wait_alive(cluster, &all, Duration::from_secs(30)).await,
        "the {size} nodes did not all see each other alive"
    );
}

/// Whether, within `limit`, each of the nodes `nodes` (indices) came to see all of them alive.
pub async fn wait_alive(cluster: &TestCluster, nodes: &[usize], limit: Duration) -> bool {
    let ids: Vec<&str> = nodes.iter().map(|&i| cluster.nodes[i].id.as_str()).collect();
    eventually(limit, || async {
        for &i in nodes {
            let s = cluster.status(i).await?;
            if !ids.iter().all(|id| liveness_of(&s, id).as_deref() == Some("alive")) {
                return None;
            }
        }
        Some(())
    })
    .await
    .is_some()
}

/// Run `shoal admin ARGS --endpoint http://node-i` off the async workers.
pub async fn admin_output(cluster: &TestCluster, i: usize, args: &[&str]) -> std::process::Output {
    let mut all: Vec<String> = std::iter::once("admin")
        .chain(args.iter().copied())
        .map(str::to_string)
        .collect();
    all.extend(["--endpoint".to_string(), format!("http://{}", cluster.nodes[i].http)]);
    tokio::task::spawn_blocking(move || run_shoal(&all.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

/// `shoal admin ARGS`, which must succeed; returns what it printed.
pub async fn admin(cluster: &TestCluster, i: usize, args: &[&str]) -> String {
    let out = admin_output(cluster, i, args).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "shoal admin {args:?} failed: {text}");
    text
}

/// A tmpfs mounted at a directory, unmounted (lazily, so a node still on it does not block it)
/// on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size_mb: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs", path_str(at)])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").args(["-l", path_str(&self.0)]).status();
    }
}

/// Bytes available on the filesystem holding `dir`, as `df` reports them.
pub fn available(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail", path_str(dir)])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the available bytes")
}
