//! Local clusters of real `shoal serve` processes: `shoal dev`, and the embedded cluster that
//! `shoal bench` starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::process::{Child, Command};

#[derive(Args, Clone, Debug)]
pub struct DevArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Where certificates, configs, logs and data live; kept across restarts.
    #[arg(long, default_value = ".shoal-dev")]
    pub dir: PathBuf,
    /// HTTP port of the first node; node i listens on http_port + i.
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// Peer (QUIC, mutual TLS) port of the first node.
    #[arg(long, default_value_t = 9080)]
    pub peer_port: u16,
    /// Client QUIC port of the first node.
    #[arg(long, default_value_t = 7080)]
    pub quic_port: u16,
    /// Default replication factor (capped at the node count).
    #[arg(long, default_value_t = 3)]
    pub n: u8,
    /// Inject WARS latencies on every replica request (`bench.latency_profile`): lan,
    /// lnkd-ssd, lnkd-disk, ymmr, wan, or the path of a TOML profile.
    #[arg(long)]
    pub latency_profile: Option<String>,
}

/// One node of a local cluster.
pub struct LocalNode {
    pub id: String,
    pub http: SocketAddr,
    pub quic: SocketAddr,
    pub log: PathBuf,
    pub child: Child,
}

pub struct LocalCluster {
    pub nodes: Vec<LocalNode>,
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Write certificates (once) and a config per node, start every node, wait until all serve.
pub async fn start(args: &DevArgs) -> anyhow::Result<LocalCluster> {
    anyhow::ensure!(args.nodes >= 1, "--nodes must be at least 1");
    let dir = &args.dir;
    let certs = dir.join("certs");
    crate::cert::init(&certs, "shoal-dev", true)?;
    let n = (args.n as usize).min(args.nodes).max(1);
    // Majority quorums by default: n=3 gives w=r=2, n=1 gives 1.
    let (w, r) = (n / 2 + 1, n / 2 + 1);
    let port = |base: u16, i: usize| -> anyhow::Result<u16> {
        u16::try_from(base as usize + i).context("port numbers run past 65535")
    };
    let mut members = String::new();
    for i in 0..args.nodes {
        members.push_str(&format!(
            "[[cluster.members]]\nid = \"n{}\"\npeer = \"{}\"\n\n",
            i + 1,
            addr(port(args.peer_port, i)?)
        ));
    }
    let exe = std::env::current_exe().context("locating the shoal binary")?;
    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        let id = format!("n{}", i + 1);
        let node_dir = dir.join(&id);
        std::fs::create_dir_all(&node_dir).with_context(|| format!("creating {}", node_dir.display()))?;
        let (cert, key) = crate::cert::node(&certs, &id, &[], true)?;
        let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let (http, peer, quic) = (
            addr(port(args.http_port, i)?),
            addr(port(args.peer_port, i)?),
            addr(port(args.quic_port, i)?),
        );
        let config = format!(
            "# Written by `shoal dev`; rewritten on every start.\n\
             [node]\nid = \"{id}\"\ndata_dir = \"{data}\"\n\n\
             [listen]\nhttp = \"{http}\"\npeer = \"{peer}\"\nquic = \"{quic}\"\n\n\
             [tls]\nca_cert = \"{ca}\"\nnode_cert = \"{cert}\"\nnode_key = \"{key}\"\n\n\
             [requests]\nn = {n}\nw = {w}\nr = {r}\n\n\
             [cluster]\nsecret_file = \"{secret}\"\n\n{members}",
            data = abs(&node_dir).join("data").display(),
            ca = abs(&certs.join("ca.pem")).display(),
            cert = abs(&cert).display(),
            key = abs(&key).display(),
            secret = abs(&certs.join("cluster.secret")).display(),
        );
        let config = match &args.latency_profile {
            // A profile file is named by absolute path: the node may run elsewhere.
            Some(p) => format!(
                "{config}\n[bench]\nlatency_profile = \"{}\"\n",
                abs(Path::new(p)).display().to_string().escape_default()
            ),
            None => config,
        };
        let config_path = node_dir.join("shoal.toml");
        std::fs::write(&config_path, config).with_context(|| format!("writing {}", config_path.display()))?;
        let log = node_dir.join("node.log");
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let child = Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .context("starting shoal serve")?;
        nodes.push(LocalNode {
            id,
            http,
            quic,
            log,
            child,
        });
    }
    let mut cluster = LocalCluster { nodes };
    for node in &mut cluster.nodes {
        wait_healthy(node).await?;
    }
    Ok(cluster)
}

async fn wait_healthy(node: &mut LocalNode) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = node.child.try_wait()? {
            anyhow::bail!(
                "node {} exited ({status}) during start; see {}",
                node.id,
                node.log.display()
            );
        }
        if tokio::net::TcpStream::connect(node.http).await.is_ok() {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "node {} did not start serving within 30 s; see {}",
            node.id,
            node.log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl LocalCluster {
    /// Stop every node with SIGTERM (graceful), then wait.
    pub async fn stop(mut self) {
        for node in &mut self.nodes {
            if let Some(pid) = node.child.id() {
                // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        }
        for node in &mut self.nodes {
            let _ = tokio::time::timeout(Duration::from_secs(10), node.child.wait()).await;
            let _ = node.child.start_kill();
        }
    }

    pub fn http_endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("http://{}", n.http)).collect()
    }

    pub fn quic_endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("quic://{}", n.quic)).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(|n| n.child.id()).collect()
    }
}

/// `shoal dev`: run a local cluster in the foreground until Ctrl-C.
pub async fn dev(args: DevArgs) -> anyhow::Result<std::process::ExitCode> {
    let mut cluster = start(&args).await?;
    let ca = std::fs::canonicalize(args.dir.join("certs/ca.pem"))?;
    println!(
        "Shoal dev cluster: {} node(s), data in {}",
        cluster.nodes.len(),
        args.dir.display()
    );
    for node in &cluster.nodes {
        println!(
            "  {}  http://{}  quic://{}  log {}",
            node.id,
            node.http,
            node.quic,
            node.log.display()
        );
    }
    let first = &cluster.nodes[0];
    println!("\nTry:");
    println!(
        "  curl -i -X PUT --data-binary 'hello' http://{}/v1/kv/greeting",
        first.http
    );
    println!(
        "  curl -i http://{}/v1/kv/greeting",
        cluster.nodes.last().map_or(first.http, |n| n.http)
    );
    println!(
        "  shoal kv get greeting --endpoint quic://{} --ca {}",
        first.quic,
        ca.display()
    );
    println!("\nCtrl-C stops the cluster; its data stays in {}.", args.dir.display());
    // A dev cluster is where people try failures: a node that dies (say, `kill -9`) is
    // reported, and the others keep serving. Only when every node is gone does `dev` give up.
    let watch = async {
        let mut reported = vec![false; cluster.nodes.len()];
        loop {
            for (i, node) in cluster.nodes.iter_mut().enumerate() {
                if reported[i] {
                    continue;
                }
                if let Ok(Some(status)) = node.child.try_wait() {
                    reported[i] = true;
                    eprintln!(
                        "node {} exited ({status}); the others keep serving. Log: {}. Restart `shoal dev` to bring it back.",
                        node.id,
                        node.log.display()
                    );
                }
            }
            if reported.iter().all(|r| *r) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let all_died = tokio::select! {
        _ = crate::shutdown_signal() => false,
        _ = watch => true,
    };
    cluster.stop().await;
    Ok(if all_died {
        eprintln!("every node has exited");
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}
