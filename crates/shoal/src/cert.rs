//! `shoal cert`: the cluster CA, the context-signing secret, and node certificates.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use shoal_net::tls;

#[derive(Subcommand)]
pub enum CertCommand {
    /// Create a cluster CA (ca.pem, ca.key) and the context-signing secret (cluster.secret) in DIR.
    Init {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        #[arg(long, default_value = "shoal")]
        cluster_name: String,
    },
    /// Issue a certificate for a node (DIR/ID.pem, DIR/ID.key) signed by the CA in DIR.
    Node {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        #[arg(long)]
        id: String,
        /// Extra DNS names or IP addresses the node is reached at (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

pub fn run(cmd: CertCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        CertCommand::Init { dir, cluster_name } => {
            init(&dir, &cluster_name, false)?;
            println!("cluster CA and secret written to {}", dir.display());
        }
        CertCommand::Node { dir, id, hosts } => {
            node(&dir, &id, &hosts, false)?;
            println!(
                "certificate for {id} written to {}",
                dir.join(format!("{id}.pem")).display()
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn random_secret() -> anyhow::Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Create the CA and secret. With `keep`, existing files are left as they are (for `shoal dev`).
pub fn init(dir: &Path, cluster_name: &str, keep: bool) -> anyhow::Result<()> {
    let (ca, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    if ca.exists() && keep {
        return Ok(());
    }
    anyhow::ensure!(
        !ca.exists(),
        "{} already exists; refusing to replace a cluster CA",
        ca.display()
    );
    let (cert_pem, key_pem) = tls::generate_ca(cluster_name)?;
    tls::write_pem(&ca, &cert_pem, false)?;
    tls::write_pem(&key, &key_pem, true)?;
    tls::write_pem(&dir.join("cluster.secret"), &format!("{}\n", random_secret()?), true)?;
    Ok(())
}

pub fn node(dir: &Path, id: &str, hosts: &[String], keep: bool) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join(format!("{id}.pem")), dir.join(format!("{id}.key")));
    if keep && cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let read = |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()));
    let ca_cert = read(dir.join("ca.pem"))?;
    let ca_key = read(dir.join("ca.key"))?;
    let (cert_pem, key_pem) = tls::issue_node_cert(&ca_cert, &ca_key, id, hosts)?;
    tls::write_pem(&cert, &cert_pem, false)?;
    tls::write_pem(&key, &key_pem, true)?;
    Ok((cert, key))
}
