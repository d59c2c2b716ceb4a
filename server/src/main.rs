//! Wires the modules of the `server` library into the `websocket-server` binary.

use std::process::ExitCode;

use server::config::{self, Cli, Command};
use server::{Listeners, healthcheck, logging, shutdown};

/// mimalloc rather than glibc's malloc: an idle connection is a dozen small heap blocks, which
/// mimalloc keeps without per-block headers, in size-class pages where the task's 128-byte
/// alignment costs nothing. Measured: about 250 bytes less per idle connection, for about 1 MiB
/// more at start.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let Cli {
        command,
        mut config,
    } = Cli::load();
    match command {
        Some(Command::Healthcheck) => runtime(None).block_on(healthcheck::run(&config)),
        None => {
            let fitted = config::raise_open_file_limit()
                .map_err(|err| format!("cannot read or raise the open-file limit: {err}"))
                .and_then(|open_files| config.fit_open_file_limit(open_files));
            let warning = fitted.unwrap_or_else(|message| config::exit_with_config_error(&message));
            let _log_writer = logging::init(config.log_format, &config.log_level);
            if let Some(warning) = warning {
                tracing::warn!("{warning}");
            }
            runtime(Some(config.worker_threads)).block_on(async {
                let listeners = match Listeners::bind(&config) {
                    Ok(listeners) => listeners,
                    Err(err) => {
                        eprintln!("websocket-server: {err}");
                        return ExitCode::FAILURE;
                    }
                };
                server::run(&config, listeners, shutdown::termination_signal()).await;
                ExitCode::SUCCESS
            })
        }
    }
}

/// The server's runtime, on `worker_threads` threads (0: one per CPU the process may use), or on
/// the calling thread alone (`None`: the health check).
fn runtime(worker_threads: Option<u16>) -> tokio::runtime::Runtime {
    let mut builder = match worker_threads {
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if threads > 0 {
                builder.worker_threads(usize::from(threads));
            }
            builder
        }
        None => tokio::runtime::Builder::new_current_thread(),
    };
    builder
        .enable_all()
        // Frames claimed for direct writes are written before a worker parks, so a busy one may
        // keep a lone frame for a few polls (see outbox::Batching).
        .on_thread_park(server::outbox::before_park)
        .build()
        .expect("start the tokio runtime")
}
