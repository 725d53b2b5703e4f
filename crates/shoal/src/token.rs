//! Bearer tokens on the command line: `shoal auth token` creates one, and every client command
//! reads the caller's from a file or the environment, never from an argument (a command line
//! is visible to every user of the host in `ps` and lands in shell history).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use shoal_node::auth::{generate_token, token_entry_toml, Scope};

/// Where a client command finds its bearer token.
#[derive(Args, Clone, Debug, Default)]
pub struct TokenArgs {
    /// File holding the bearer token (its first line). Without it, the `SHOAL_TOKEN`
    /// environment variable is used if set.
    #[arg(long, env = "SHOAL_TOKEN_FILE", value_name = "PATH", global = true)]
    pub token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The token from `--token-file` (or `SHOAL_TOKEN_FILE`), else `SHOAL_TOKEN`, else none.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading the token file {}: {e}", path.display()))?;
            let token = text.lines().next().unwrap_or("").trim().to_string();
            anyhow::ensure!(!token.is_empty(), "the token file {} is empty", path.display());
            return Ok(Some(token));
        }
        Ok(std::env::var("SHOAL_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()))
    }
}

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Create a random 256-bit bearer token for a principal. The token is printed once, alone on
    /// stdout (redirect it to a file); the `[[token]]` entry to add to every node's
    /// `auth.tokens_file` goes to stderr. Nodes keep only the token's SHA-256.
    Token {
        /// The principal's name, as it appears in the audit log.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: read, write, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
    },
}

pub fn run(cmd: AuthCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        AuthCommand::Token { name, scopes } => {
            anyhow::ensure!(!name.trim().is_empty(), "--name must not be empty");
            let scopes = scopes
                .iter()
                .map(|s| {
                    Scope::parse(s.trim())
                        .ok_or_else(|| anyhow::anyhow!("unknown scope {s:?}; scopes are read, write and admin"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let token = generate_token()?;
            println!("{token}");
            eprintln!(
                "# Add to the tokens file of every node (auth.tokens_file), then restart them:\n{}",
                token_entry_toml(&name, &scopes, &token)
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
