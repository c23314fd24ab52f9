//! `webhook-instructions`: the user-space instructions one `/mutate` request costs `coredog
//! webhook` and the ceiling (`echo-server`), counted by valgrind's callgrind.
//!
//! Requests per second on this shared 2-core machine move by ±0.1× from one run to the next;
//! an instruction count does not. Each server runs under callgrind twice per body, answering
//! `warm-up` requests and then `warm-up + requests`, on one keep-alive connection; the
//! difference divided by `requests` is the cost of a request with start-up, TLS handshake and
//! shutdown taken out. What it cannot show is what load adds (caches, scheduling): that is
//! `webhook`'s part.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use serde_json::json;

use crate::{BenchCerts, Server, connect, mutate, review_bodies, start, tls_connector};

#[derive(clap::Args)]
pub struct InstructionsArgs {
    /// The `coredog` binary to measure.
    #[arg(long, default_value = "target/release/coredog")]
    coredog: PathBuf,
    /// Requests counted per server and body.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Requests answered before those counted.
    #[arg(long, default_value_t = 200)]
    warm_up: usize,
}

pub async fn run(args: &InstructionsArgs) -> anyhow::Result<()> {
    if Command::new("valgrind").arg("--version").output().is_err() {
        bail!("valgrind is missing: apt-get install valgrind");
    }
    let requests = args.requests.max(1);
    let certs = BenchCerts::issue()?;
    let echo = std::env::current_exe()?;
    let servers: [(&str, &Path, &str, &str); 2] = [
        ("ceiling (echo)", &echo, "echo-server", "echo serving"),
        (
            "coredog webhook",
            &args.coredog,
            "webhook",
            "webhook serving HTTPS",
        ),
    ];
    println!(
        "user-space instructions per /mutate request (callgrind; {requests} requests after {} on one keep-alive connection)",
        args.warm_up
    );
    println!(
        "{:<18} {:<18} {:>14} {:>10}",
        "body", "server", "instructions", "x ceiling"
    );
    let mut summary = Vec::new();
    for (label, body) in review_bodies()? {
        let mut per_request = Vec::new();
        for (server, binary, subcommand, marker) in servers {
            let counted =
                |answered| instructions(&certs, binary, subcommand, marker, &body, answered);
            let before = counted(args.warm_up).await?;
            let after = counted(args.warm_up + requests).await?;
            let cost = after.saturating_sub(before) / requests as u64;
            let ratio = cost as f64 / *per_request.first().unwrap_or(&cost) as f64;
            println!("{label:<18} {server:<18} {cost:>14} {ratio:>9.2}x");
            per_request.push(cost);
        }
        summary.push(json!({
            "body": label,
            "ceiling_instructions": per_request[0],
            "webhook_instructions": per_request[1],
        }));
    }
    println!("{}", serde_json::to_string(&summary)?);
    let _ = std::fs::remove_dir_all(&certs.dir);
    Ok(())
}

/// Instructions `binary subcommand` executes, from start to exit, answering `answered`
/// requests of `body`.
async fn instructions(
    certs: &BenchCerts,
    binary: &Path,
    subcommand: &str,
    marker: &str,
    body: &Bytes,
    answered: usize,
) -> anyhow::Result<u64> {
    let out = certs
        .dir
        .join(format!("callgrind-{subcommand}-{answered}.out"));
    let (server, address): (Server, _) = start(
        Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(binary)
            .args([subcommand, "--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(&certs.cert)
            .arg("--tls-key")
            .arg(&certs.key),
        marker,
    )?;
    let connector = tls_connector(&certs.ca)?;
    let mut sender = connect(address, &connector).await?;
    for _ in 0..answered {
        mutate(&mut sender, body).await?;
    }
    drop(sender);
    server.interrupt()?;
    let figures =
        std::fs::read_to_string(&out).with_context(|| format!("no callgrind output {out:?}"))?;
    let _ = std::fs::remove_file(&out);
    figures
        .lines()
        .find_map(|line| {
            line.strip_prefix("summary:")
                .or_else(|| line.strip_prefix("totals:"))
        })
        .and_then(|total| total.trim().parse().ok())
        .context("no instruction total in the callgrind output")
}
