//! `loadgen`: drives the WebSocket service with one of its scenarios (broadcast, channels, idle,
//! churn, and abuse against a local server) and prints what it measured. Exit code 0: a clean run;
//! 1: the run saw losses, duplicates or errors, or an abuse check missed its target (the summary
//! says which); 2: bad arguments or nothing could be measured.

mod abuse;
mod broadcast;
mod channels;
mod churn;
mod cli;
mod client;
mod fanout;
mod idle;
mod message;
mod report;

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

use cli::{Cli, Scenario};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = cli.check() {
        eprintln!("loadgen: {err}");
        return ExitCode::from(2);
    }
    // Ten thousand sockets need more open files than the usual soft limit of 1,024.
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("loadgen: cannot raise the open-file limit: {err}");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime");
    let outcome = runtime.block_on(async {
        match &cli.scenario {
            Scenario::Broadcast(args) => broadcast::run(args)
                .await
                .map(|result| finish(&result, args.common.json, result.clean())),
            Scenario::Channels(args) => channels::run(args)
                .await
                .map(|result| finish(&result, args.common.json, result.clean())),
            Scenario::Idle(args) => idle::run(args)
                .await
                .map(|result| finish(&result, args.common.json, result.clean())),
            Scenario::Churn(args) => churn::run(args)
                .await
                .map(|result| finish(&result, args.common.json, result.clean())),
            Scenario::Abuse(args) => abuse::run(args)
                .await
                .map(|result| finish(&result, args.json, result.clean())),
        }
    });
    // Held sockets' tasks may still be closing; they need not finish.
    runtime.shutdown_background();
    outcome.unwrap_or_else(|err| {
        eprintln!("loadgen: {err}");
        ExitCode::from(2)
    })
}

fn finish<T: serde::Serialize + std::fmt::Display>(
    result: &T,
    json: bool,
    clean: bool,
) -> ExitCode {
    report::print(result, json);
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
