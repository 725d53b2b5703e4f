//! `shoal kv` and `shoal admin`: the command-line client.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use shoal_client::{Client, ClientError, Options, Read};

use crate::token::TokenArgs;

#[derive(Args, Clone, Debug)]
pub struct Target {
    /// `http://HOST:PORT`, `https://HOST:PORT` or `quic://HOST:PORT` of any node.
    #[arg(long, env = "SHOAL_ENDPOINT", default_value = "http://127.0.0.1:8080")]
    pub endpoint: String,
    /// CA certificate: the cluster CA for QUIC, or the HTTPS certificate's CA.
    #[arg(long, env = "SHOAL_CA_CERT")]
    pub ca: Option<PathBuf>,
    /// Replicas to store on (N).
    #[arg(long)]
    pub n: Option<u8>,
    /// Timeout in milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u32>,
    /// Count only the preference list toward W and R (strict quorum): no hinted copies.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub auth: TokenArgs,
}

#[derive(Subcommand)]
pub enum KvCommand {
    /// Read a key: prints the value (or every sibling) and the causal context.
    Get {
        key: String,
        #[command(flatten)]
        target: Target,
        /// Replies to wait for (R).
        #[arg(long)]
        r: Option<u8>,
    },
    /// Write a key. Pass the context of your last read to replace what that read saw.
    Put {
        key: String,
        value: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Delete a key (with the context of a read, to delete exactly what it saw).
    Delete {
        key: String,
        #[command(flatten)]
        write: WriteArgs,
    },
}

/// What puts and deletes share.
#[derive(Args, Clone, Debug)]
pub struct WriteArgs {
    #[command(flatten)]
    pub target: Target,
    /// Acknowledgements to wait for (W).
    #[arg(long)]
    pub w: Option<u8>,
    /// The causal context of an earlier read.
    #[arg(long)]
    pub context: Option<String>,
}

/// `shoal admin`: every subcommand needs a token with the admin scope when auth is on.
#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub auth: TokenArgs,
    /// CA certificate of the node's HTTPS certificate, for https:// endpoints.
    #[arg(long, env = "SHOAL_CA_CERT", global = true)]
    pub ca: Option<PathBuf>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Members, their liveness and admin state, partitions, and the layout version.
    Status {
        #[arg(long, env = "SHOAL_ENDPOINT", default_value = "http://127.0.0.1:8080")]
        endpoint: String,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add the node at --endpoint (started with no cluster.members) to the cluster that SEED,
    /// a member's peer address, belongs to. It streams in the partitions it will own; the
    /// layout switches once it has. Waits until then unless --no-wait.
    Join {
        seed: String,
        #[arg(long, env = "SHOAL_ENDPOINT", default_value = "http://127.0.0.1:8080")]
        endpoint: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Anti-entropy and hinted handoff.
    #[command(subcommand)]
    Aae(AaeCommand),
    /// Predict what an (n, r, w) choice buys in freshness, live: PBS t-visibility and
    /// k-staleness from the WARS leg latencies the node at --endpoint measured recently.
    Consistency {
        #[arg(long, env = "SHOAL_ENDPOINT", default_value = "http://127.0.0.1:8080")]
        endpoint: String,
        #[arg(long)]
        n: Option<u8>,
        #[arg(long)]
        r: Option<u8>,
        #[arg(long)]
        w: Option<u8>,
        /// Comma-separated read delays after the write's ack, in ms.
        #[arg(long)]
        t: Option<String>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Decommission the node at --endpoint: its partitions stream to their new owners, then
    /// it marks itself left and stops.
    Leave {
        #[arg(long, env = "SHOAL_ENDPOINT", default_value = "http://127.0.0.1:8080")]
        endpoint: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Take NODE, which SWIM has declared dead, out of the cluster; surviving replicas copy its
    /// partitions to their new owners.
    Remove {
        node: String,
        #[arg(long, env = "SHOAL_ENDPOINT", default_value = "http://127.0.0.1:8080")]
        endpoint: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Let the layout change in flight go on without NODE, a member SWIM has declared dead
    /// (the change otherwise waits for it). When NODE returns it is fenced off until it adopts
    /// the new layout, and hands what it holds in ranges it lost to their owners.
    Skip {
        node: String,
        #[arg(long, env = "SHOAL_ENDPOINT", default_value = "http://127.0.0.1:8080")]
        endpoint: String,
    },
}

#[derive(Subcommand)]
pub enum AaeCommand {
    /// The node's Merkle trees (keys, tombstones, root, last exchange) and the hints it holds.
    Status {
        #[arg(long, env = "SHOAL_ENDPOINT", default_value = "http://127.0.0.1:8080")]
        endpoint: String,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

async fn aae_status(
    endpoint: &str,
    token: shoal_client::Access<'_>,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let status = match shoal_client::http_get_json(endpoint, "/v1/admin/aae", token).await {
        Ok(s) => s,
        Err(e) => return report(e),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let trees = status["trees"].as_array().cloned().unwrap_or_default();
    let count = |f: &str| trees.iter().map(|t| t[f].as_u64().unwrap_or(0)).sum::<u64>();
    let field = |t: &serde_json::Value, f: &str| t["last_exchange"]["report"][f].as_u64().unwrap_or(0);
    let exchanged: Vec<&serde_json::Value> = trees.iter().filter(|t| t["last_exchange"].is_object()).collect();
    let in_sync = exchanged
        .iter()
        .filter(|t| t["last_exchange"]["result"] == "in_sync")
        .count();
    println!(
        "node {}  anti-entropy {} (every {} ms)",
        status["node"].as_str().unwrap_or("?"),
        if status["enabled"] == true { "on" } else { "off" },
        status["interval_ms"],
    );
    println!(
        "{} trees, {} keys, {} tombstones; {} exchanged, {} in sync at their last exchange",
        trees.len(),
        count("keys"),
        count("tombstones"),
        exchanged.len(),
        in_sync
    );
    let divergent: u64 = exchanged.iter().map(|t| field(t, "divergent")).sum();
    let repaired: u64 = exchanged.iter().map(|t| field(t, "pulled") + field(t, "pushed")).sum();
    println!("last exchanges found {divergent} divergent keys and repaired {repaired}");
    let mut recent: Vec<&&serde_json::Value> = exchanged.iter().filter(|t| field(t, "divergent") > 0).collect();
    recent.sort_by_key(|t| std::cmp::Reverse(t["last_exchange"]["at_ms"].as_u64().unwrap_or(0)));
    if !recent.is_empty() {
        println!(
            "{:>9} {:>2} {:<10} {:>9} {:>7} {:>7}  RESULT",
            "PARTITION", "N", "PEER", "DIVERGENT", "PULLED", "PUSHED"
        );
        for t in recent.iter().take(20) {
            let x = &t["last_exchange"];
            println!(
                "{:>9} {:>2} {:<10} {:>9} {:>7} {:>7}  {}",
                t["partition"],
                t["n"],
                x["peer"].as_str().unwrap_or("?"),
                field(t, "divergent"),
                field(t, "pulled"),
                field(t, "pushed"),
                x["result"].as_str().unwrap_or("?"),
            );
        }
    }
    let hints = status["hints"].as_array().cloned().unwrap_or_default();
    if hints.is_empty() {
        println!("hints: none held");
    }
    for h in hints {
        println!("hints for {}: {}", h["target"].as_str().unwrap_or("?"), h["pending"]);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Polls `endpoint`'s status until the change proposed at `epoch` has committed, printing the
/// transfer progress as it goes.
async fn wait_committed(
    endpoint: &str,
    token: shoal_client::Access<'_>,
    epoch: u64,
) -> anyhow::Result<std::process::ExitCode> {
    let mut last = String::new();
    loop {
        let status = match shoal_client::http_get_json(endpoint, "/v1/admin/status", token).await {
            Ok(s) => s,
            // A leaving node stops once its change has committed.
            Err(e) => {
                eprintln!("{endpoint} stopped answering ({e}); a node that has left stops");
                return Ok(std::process::ExitCode::SUCCESS);
            }
        };
        let current = status["layout"]["epoch"].as_u64().unwrap_or(0);
        let transition = &status["layout"]["transition"];
        if current > epoch && transition.is_null() {
            println!("done: layout epoch {current}");
            return Ok(std::process::ExitCode::SUCCESS);
        }
        // Committed at `epoch + 1`; done once every live node has adopted the commit.
        let retiring = current == epoch + 1 && transition["phase"] == "retiring";
        if current > epoch && !retiring {
            println!("superseded: another change is in flight at epoch {current}");
            return Ok(std::process::ExitCode::from(1));
        }
        let mut line = Vec::new();
        for m in status["members"].as_array().into_iter().flatten() {
            if let Some(t) = m["transfer"].as_object() {
                line.push(format!(
                    "{} {:.0}%",
                    m["id"].as_str().unwrap_or("?"),
                    t["percent"].as_f64().unwrap_or(0.0)
                ));
            }
        }
        let line = if retiring {
            "committed: waiting for every live node to adopt it".to_string()
        } else {
            format!(
                "transferring: {}",
                if line.is_empty() {
                    "waiting".into()
                } else {
                    line.join(", ")
                }
            )
        };
        let line = match blocked_by(transition) {
            Some(why) => format!("{line}; blocked: {why} (it resumes when they return; `shoal admin skip NODE` goes on without a dead one)"),
            None => line,
        };
        if line != last {
            println!("{line}");
            last = line;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

async fn change(
    endpoint: &str,
    token: shoal_client::Access<'_>,
    path: &str,
    no_wait: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let answer = match shoal_client::http_json(endpoint, "POST", path, token).await {
        Ok(a) => a,
        Err(e) => return report(e),
    };
    let epoch = answer["epoch"].as_u64().unwrap_or(0);
    println!(
        "accepted: {} {} at layout epoch {epoch}",
        answer["transition"]["kind"].as_str().unwrap_or("?"),
        answer["transition"]["node"].as_str().unwrap_or("?")
    );
    if no_wait {
        return Ok(std::process::ExitCode::SUCCESS);
    }
    wait_committed(endpoint, token, epoch).await
}

/// What the change in flight waits for from members that are not alive, as one line.
fn blocked_by(transition: &serde_json::Value) -> Option<String> {
    let reasons: Vec<&str> = transition["waiting_for"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| w["liveness"] != "alive")
        .filter_map(|w| w["reason"].as_str())
        .collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

fn query_value(v: &str) -> String {
    serde_urlencoded::to_string([("v", v)]).unwrap_or_default()[2..].to_string()
}

fn options(t: &Target, w: Option<u8>, r: Option<u8>) -> Options {
    Options {
        n: t.n,
        w,
        r,
        timeout_ms: t.timeout_ms,
        sloppy: t.strict.then_some(false),
    }
}

fn print_consistency(p: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "node {}  n={} r={} w={}  injected profile: {}  ({} trials)",
        p["node"].as_str().unwrap_or("?"),
        p["n"],
        p["r"],
        p["w"],
        p["injected_profile"].as_str().unwrap_or("none"),
        p["trials"]
    );
    println!("\nmeasured legs (ms)   samples      mean       p50       p99");
    for kind in ["local", "remote"] {
        for leg in ["w", "a", "r", "s"] {
            let l = &p["legs_ms"][kind][leg];
            if l.is_object() {
                println!(
                    "  {kind:<6} {:<3} {:>12} {:>9.3} {:>9.3} {:>9.3}",
                    leg.to_uppercase(),
                    l["samples"],
                    f(&l["mean_ms"]),
                    f(&l["p50_ms"]),
                    f(&l["p99_ms"])
                );
            }
        }
    }
    println!("\nt-visibility: P(a read t ms after the ack returns the write or newer)");
    for point in p["t_visibility"].as_array().into_iter().flatten() {
        println!("  t = {:>7.1} ms   {:.5}", f(&point["t_ms"]), f(&point["p_fresh"]));
    }
    println!("\nk-staleness at t = 0: P(one of the last k versions)");
    for point in p["k_staleness"].as_array().into_iter().flatten() {
        println!("  k = {}   {:.5}", point["k"], f(&point["p"]));
    }
    let lat = &p["predicted_latency_ms"];
    println!(
        "\npredicted latency (ms)  read p50 {:.2} p99 {:.2} p99.9 {:.2}   write p50 {:.2} p99 {:.2} p99.9 {:.2}",
        f(&lat["read"]["p50"]),
        f(&lat["read"]["p99"]),
        f(&lat["read"]["p999"]),
        f(&lat["write"]["p50"]),
        f(&lat["write"]["p99"]),
        f(&lat["write"]["p999"])
    );
    println!(
        "without write spreading (PBS closed form) a read would miss with p = {:.4}",
        f(&p["closed_form_p_stale_non_expanding"])
    );
}

fn report(e: ClientError) -> anyhow::Result<std::process::ExitCode> {
    eprintln!("error: {e}");
    if let ClientError::Api(api) = &e {
        if let Some(ctx) = &api.context {
            println!("context: {ctx}");
        }
    }
    Ok(std::process::ExitCode::from(2))
}

pub async fn run(cmd: KvCommand) -> anyhow::Result<std::process::ExitCode> {
    let target = match &cmd {
        KvCommand::Get { target, .. } => target,
        KvCommand::Put { write, .. } | KvCommand::Delete { write, .. } => &write.target,
    };
    let token = target.auth.token()?;
    let client = match Client::connect(&target.endpoint, target.ca.as_deref()).await {
        Ok(c) => c.with_token(token),
        Err(e) => return report(e),
    };
    match &cmd {
        KvCommand::Get { key, target, r } => match client.get(key.as_bytes(), &options(target, None, *r)).await {
            Ok(Read::Found { context, values }) => {
                if values.len() == 1 {
                    println!("{}", String::from_utf8_lossy(&values[0]));
                } else {
                    println!("{} siblings:", values.len());
                    for (i, v) in values.iter().enumerate() {
                        println!("  [{}] {}", i + 1, String::from_utf8_lossy(v));
                    }
                }
                println!("context: {context}");
                Ok(std::process::ExitCode::SUCCESS)
            }
            Ok(Read::NotFound { context }) => {
                println!("not found");
                if let Some(c) = context {
                    println!("context: {c}");
                }
                Ok(std::process::ExitCode::from(1))
            }
            Err(e) => report(e),
        },
        KvCommand::Put { key, value, write } => {
            let opts = options(&write.target, write.w, None);
            match client
                .put(key.as_bytes(), value.clone().into(), write.context.as_deref(), &opts)
                .await
            {
                Ok(done) => {
                    println!(
                        "ok: {} acks ({} hinted), {} sibling(s)",
                        done.acks, done.hinted, done.siblings
                    );
                    if done.sibling_warning {
                        eprintln!(
                            "warning: {} siblings; resolve them by writing with the context",
                            done.siblings
                        );
                    }
                    println!("context: {}", done.context);
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Err(e) => report(e),
            }
        }
        KvCommand::Delete { key, write } => {
            let opts = options(&write.target, write.w, None);
            match client.delete(key.as_bytes(), write.context.as_deref(), &opts).await {
                Ok(done) => {
                    println!("deleted: {} acks ({} hinted)", done.acks, done.hinted);
                    println!("context: {}", done.context);
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Err(e) => report(e),
            }
        }
    }
}

pub async fn admin(args: AdminArgs) -> anyhow::Result<std::process::ExitCode> {
    let token = args.auth.token()?;
    let token = shoal_client::Access {
        token: token.as_deref(),
        ca: args.ca.as_deref(),
    };
    match args.command {
        AdminCommand::Join {
            seed,
            endpoint,
            no_wait,
        } => {
            change(
                &endpoint,
                token,
                &format!("/v1/admin/join?seed={}", query_value(&seed)),
                no_wait,
            )
            .await
        }
        AdminCommand::Leave { endpoint, no_wait } => change(&endpoint, token, "/v1/admin/leave", no_wait).await,
        AdminCommand::Remove {
            node,
            endpoint,
            no_wait,
        } => {
            change(
                &endpoint,
                token,
                &format!("/v1/admin/remove?node={}", query_value(&node)),
                no_wait,
            )
            .await
        }
        AdminCommand::Skip { node, endpoint } => {
            let path = format!("/v1/admin/skip?node={}", query_value(&node));
            match shoal_client::http_json(&endpoint, "POST", &path, token).await {
                Ok(answer) => {
                    println!(
                        "skipped {node}: the layout change in flight (epoch {}) goes on without it",
                        answer["epoch"]
                    );
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Err(e) => report(e),
            }
        }
        AdminCommand::Aae(AaeCommand::Status { endpoint, json }) => aae_status(&endpoint, token, json).await,
        AdminCommand::Consistency {
            endpoint,
            n,
            r,
            w,
            t,
            json,
        } => {
            let mut query: Vec<String> = [("n", n), ("r", r), ("w", w)]
                .iter()
                .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
                .collect();
            if let Some(t) = t {
                query.push(format!("t={}", query_value(&t)));
            }
            let path = format!("/v1/admin/consistency?{}", query.join("&"));
            let p = match shoal_client::http_get_json(&endpoint, &path, token).await {
                Ok(p) => p,
                Err(e) => return report(e),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
                return Ok(std::process::ExitCode::SUCCESS);
            }
            print_consistency(&p);
            Ok(std::process::ExitCode::SUCCESS)
        }
        AdminCommand::Status { endpoint, json } => {
            let status = match shoal_client::http_get_json(&endpoint, "/v1/admin/status", token).await {
                Ok(s) => s,
                Err(e) => return report(e),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(std::process::ExitCode::SUCCESS);
            }
            let s = |v: &serde_json::Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            println!(
                "node {}  layout v{} (epoch {})  {} partitions  defaults n={} w={} r={}",
                s(&status["node"]["id"]),
                status["layout"]["version"],
                status["layout"]["epoch"],
                status["layout"]["partitions"],
                status["defaults"]["n"],
                status["defaults"]["w"],
                status["defaults"]["r"],
            );
            if let Some(t) = status["layout"]["transition"].as_object() {
                println!("in flight: {} of {} ({})", s(&t["kind"]), s(&t["node"]), s(&t["phase"]));
                for w in t["waiting_for"].as_array().into_iter().flatten() {
                    println!("  waiting: {}", s(&w["reason"]));
                }
                if let Some(secs) = t["blocked_secs"].as_f64() {
                    println!(
                        "  blocked for {secs:.0} s on a member that is not alive: it resumes when the member returns; \
                         `shoal admin skip NODE` goes on without a dead one"
                    );
                }
            }
            println!(
                "{:<10} {:<9} {:<8} {:<8} {:<22} {:>7} {:>10}  TRANSFER",
                "MEMBER", "LIVENESS", "ADMIN", "ZONE", "PEER", "PRIMARY", "REPLICATED"
            );
            for m in status["members"].as_array().into_iter().flatten() {
                let transfer = match m["transfer"].as_object() {
                    Some(t) => format!(
                        "epoch {} {:.0}% ({}/{} partitions, {} keys, {} bytes){}",
                        t["epoch"],
                        t["percent"].as_f64().unwrap_or(0.0),
                        t["partitions_done"],
                        t["partitions_total"],
                        t["keys"],
                        t["bytes"],
                        t["waiting"]
                            .as_str()
                            .map(|w| format!("; waiting: {w}"))
                            .unwrap_or_default()
                    ),
                    None => "-".into(),
                };
                println!(
                    "{:<10} {:<9} {:<8} {:<8} {:<22} {:>7} {:>10}  {}",
                    s(&m["id"]),
                    s(&m["liveness"]),
                    s(&m["admin_state"]),
                    s(&m["zone"]),
                    s(&m["peer"]),
                    s(&m["partitions_primary"]),
                    s(&m["partitions_replicated"]),
                    transfer,
                );
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
