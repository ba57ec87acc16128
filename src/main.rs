//! The `switchboard` command line: parse arguments, load config, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchboard::config::Config;

/// jemalloc instead of the system allocator: under call churn glibc's malloc kept freed memory
/// resident, so RSS grew with every call placed; jemalloc returns it (BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "A telephony switch that connects phone calls to voicebots"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the switch (REST and WebSockets on [http] listen, gRPC on [grpc] listen).
    Serve {
        /// TOML configuration; default ./config.toml when present, else built-in defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Log lines as text or as one JSON object per line (fields at the top level; `call`
        /// is the call's id on lines about a call).
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Check a configuration file and exit.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Place a test call as a SmartIVR phone gateway (or, with --sip, as a SIP phone) and print
    /// what comes back.
    Dial {
        /// Call this SIP URI instead (`sip:bot@127.0.0.1:5060`), over UDP with PCMU.
        #[arg(long)]
        sip: Option<String>,
        /// The switch's gRPC address.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        grpc: String,
        /// A WAV file to stream as the caller's voice (silence when absent).
        #[arg(long)]
        wav: Option<PathBuf>,
        /// Keys to press, one after each prompt, for example "2".
        #[arg(long, default_value = "")]
        keys: String,
        /// The gateway's conversation id.
        #[arg(long, default_value = "dial-test")]
        conversation_id: String,
        /// Hang up after this many seconds.
        #[arg(long, default_value_t = 60)]
        max_seconds: u64,
        /// Save each prompt's audio into this folder.
        #[arg(long)]
        save_dir: Option<PathBuf>,
        /// A token of the switch's `[grpc] tokens`, sent as `authorization: Bearer TOKEN`.
        #[arg(long)]
        token: Option<String>,
    },
    /// Play many concurrent callers against a switch and report what it costs per call.
    Load {
        #[arg(long, value_enum, default_value = "ws")]
        protocol: switchboard::load::Protocol,
        #[arg(long, value_enum, default_value = "stream")]
        mode: switchboard::load::Mode,
        /// Concurrent calls (stream) or calls in all (setup, churn).
        #[arg(long, default_value_t = 100)]
        calls: usize,
        /// Seconds over which calls are started.
        #[arg(long, default_value_t = 10.0)]
        ramp_seconds: f64,
        /// Seconds all calls stream while the switch is measured.
        #[arg(long, default_value_t = 20.0)]
        hold_seconds: f64,
        /// Start a switch process for the run (echo flow bot, free loopback ports).
        #[arg(long)]
        spawn: bool,
        /// With --spawn: the bot every call goes to. `twilio` runs the Twilio Media Streams
        /// echo bot inside the load generator and routes calls to it as a `twilio_stream` bot;
        /// `live-call` does the same with the `live_call` echo AI service; `room` puts every
        /// `--room-size` callers in a conference room.
        #[arg(long, value_enum, default_value = "flow")]
        bot: switchboard::load::Bot,
        /// With --bot room: callers per conference room.
        #[arg(long, default_value_t = 5)]
        room_size: usize,
        /// With --bot live-call: the bot's `frame_ms` (caller audio per `play_audio`).
        #[arg(long, default_value_t = 20)]
        bot_frame_ms: u32,
        /// With --bot live-call: the bot's `streams_per_connection` (1: a connection per call).
        #[arg(long, default_value_t = 100)]
        bot_streams: usize,
        /// The switch's HTTP listener (ignored with --spawn).
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: std::net::SocketAddr,
        /// The switch's gRPC listener (ignored with --spawn).
        #[arg(long, default_value = "127.0.0.1:50051")]
        grpc: std::net::SocketAddr,
        /// The switch's SIP listener, UDP (ignored with --spawn).
        #[arg(long, default_value = "127.0.0.1:5060")]
        sip: std::net::SocketAddr,
        /// The live-call WebSocket token (ignored with --spawn).
        #[arg(long, default_value = "change-me")]
        token: String,
        /// The switch's process id, for CPU and memory figures (implied by --spawn).
        #[arg(long)]
        pid: Option<u32>,
        /// Calls in flight at once in setup and churn modes.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// max_calls of a spawned switch.
        #[arg(long, default_value_t = 10000)]
        max_calls: usize,
        /// Play hostile peers instead of callers, one flood at a time, and report each one's
        /// cost: the switch's RSS, REST latency during the flood, and whether it still serves.
        #[arg(long)]
        abuse: bool,
        /// With --abuse: seconds each flood lasts.
        #[arg(long, default_value_t = 6.0)]
        seconds: f64,
        /// With --abuse: the longest wait after each flood for the switch to settle (no live
        /// call, RSS no longer falling). With --spawn each flood also gets a fresh switch.
        #[arg(long, default_value_t = 10.0)]
        settle_seconds: f64,
        /// With --abuse: the floods to play (comma-separated; default all, in this order).
        #[arg(long, value_enum, value_delimiter = ',')]
        floods: Vec<switchboard::load::Flood>,
        /// With --abuse: `?token=` for /ringover/stream when the switch asks for one.
        #[arg(long)]
        ringover_token: Option<String>,
        /// With --abuse: Bearer key for REST requests when the switch asks for one.
        #[arg(long)]
        api_key: Option<String>,
    },
    /// Run an echo AI service (live_call.LiveCall) for demos and load runs; with --twilio, a
    /// Twilio Media Streams echo bot (WebSocket) instead.
    EchoBot {
        #[arg(long, default_value = "127.0.0.1:50061")]
        listen: std::net::SocketAddr,
        /// Speak Twilio Media Streams (a `twilio_stream` bot at ws://LISTEN/).
        #[arg(long)]
        twilio: bool,
    },
}

/// How `serve` writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines; coloured only when stdout is a terminal and `NO_COLOR` is unset.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Logs to stdout at `RUST_LOG` (default `info`).
fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // The SIP stack logs every message it sends and receives at info: warnings only.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rsipstack=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_ansi(false)
            .init(),
        LogFormat::Text => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init()
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, log_format } => {
            init_tracing(log_format);
            let source = Config::source(config.as_deref());
            let config = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("switchboard: {source}: {e}");
                    return ExitCode::from(2);
                }
            };
            for ingress in config.unrouted_ingresses() {
                tracing::warn!(%ingress, config = %source, "no route matches this ingress: its calls will be refused");
            }
            let app = match switchboard::app::spawn(config) {
                Ok(app) => app,
                Err(e) => {
                    eprintln!("switchboard: {e}");
                    return ExitCode::from(1);
                }
            };
            wait_for_signal();
            tracing::info!("signal received; stopping");
            app.shutdown();
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config } => {
            let source = Config::source(config.as_deref());
            match Config::load(config.as_deref()) {
                Ok(c) => {
                    for ingress in c.unrouted_ingresses() {
                        println!("warning: no route matches ingress `{ingress}`: its calls will be refused");
                    }
                    println!("configuration {source} is valid");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("switchboard: {source}: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Dial {
            sip: Some(uri),
            wav,
            keys,
            max_seconds,
            save_dir,
            ..
        } => run_async(switchboard::protocols::sip::dial::dial(
            switchboard::protocols::sip::dial::SipDialOptions {
                uri,
                wav,
                keys,
                max_seconds,
                save_dir,
            },
        )),
        Command::Dial {
            grpc,
            wav,
            keys,
            conversation_id,
            max_seconds,
            save_dir,
            token,
            sip: None,
        } => {
            let opts = switchboard::dial::DialOptions {
                grpc,
                conversation_id,
                wav,
                keys,
                max_seconds,
                save_dir,
                token,
            };
            run_async(async {
                switchboard::dial::dial(opts)
                    .await
                    .map_err(|e| e.to_string())
            })
        }
        Command::Load {
            protocol,
            mode,
            calls,
            ramp_seconds,
            hold_seconds,
            spawn,
            bot,
            room_size,
            bot_frame_ms,
            bot_streams,
            http,
            grpc,
            sip,
            token,
            pid,
            concurrency,
            max_calls,
            abuse,
            seconds,
            settle_seconds,
            floods,
            ringover_token,
            api_key,
        } => run_async(async move {
            use switchboard::load::{
                self, AbuseOptions, LoadOptions, Mode, SpawnBot, SpawnedSwitch,
            };
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            if abuse {
                let mut opts = AbuseOptions::new(http, grpc, token);
                opts.pid = pid;
                opts.ringover_token = ringover_token;
                opts.api_key = api_key;
                if !floods.is_empty() {
                    opts.floods = floods;
                }
                opts.phase = std::time::Duration::from_secs_f64(seconds);
                opts.settle = std::time::Duration::from_secs_f64(settle_seconds);
                opts.verbose = true;
                // With --spawn, each flood gets a fresh switch process.
                let report = if spawn {
                    load::abuse::run_fresh(&exe, max_calls, &opts).await
                } else {
                    load::abuse::run(&opts).await
                };
                print!("{}", report.map_err(|e| e.to_string())?);
                return Ok(());
            }
            // The Twilio echo bot runs here, on the load generator's runtime, so the switch's
            // figures are the switch's alone.
            if bot == load::Bot::Room && protocol != load::Protocol::Ws {
                return Err("--bot room needs --protocol ws".into());
            }
            let spawn_bot = match (spawn, bot) {
                (true, load::Bot::Twilio) => {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .map_err(|e| e.to_string())?;
                    let addr = listener.local_addr().map_err(|e| e.to_string())?;
                    tokio::spawn(switchboard::bots::twilio_echo::serve(
                        listener,
                        std::future::pending(),
                    ));
                    SpawnBot::Twilio(addr)
                }
                (true, load::Bot::LiveCall) => {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .map_err(|e| e.to_string())?;
                    let addr = listener.local_addr().map_err(|e| e.to_string())?;
                    tokio::spawn(switchboard::bots::echo_service::serve(
                        listener,
                        std::future::pending(),
                    ));
                    SpawnBot::LiveCall {
                        addr,
                        frame_ms: bot_frame_ms,
                        streams_per_connection: bot_streams,
                    }
                }
                (_, load::Bot::Room) => SpawnBot::Room,
                _ if mode != Mode::Stream => SpawnBot::Greet,
                _ => SpawnBot::Echo,
            };
            let spawned = if spawn {
                Some(SpawnedSwitch::start_with(&exe, max_calls, spawn_bot).await?)
            } else {
                None
            };
            let opts = LoadOptions {
                protocol,
                mode,
                http: spawned.as_ref().map_or(http, |s| s.http),
                grpc: spawned.as_ref().map_or(grpc, |s| s.grpc),
                sip: Some(spawned.as_ref().map_or(sip, |s| s.sip)),
                token: spawned.as_ref().map_or(token, |s| s.token.clone()),
                calls,
                ramp: std::time::Duration::from_secs_f64(ramp_seconds),
                hold: std::time::Duration::from_secs_f64(hold_seconds),
                pid: spawned.as_ref().map(|s| s.pid()).or(pid),
                concurrency,
                room_size: if bot == load::Bot::Room {
                    room_size.max(1)
                } else {
                    0
                },
            };
            let report = load::run(opts).await.map_err(|e| e.to_string())?;
            print!("{report}");
            Ok(())
        }),
        Command::EchoBot { listen, twilio } => run_async(async move {
            if twilio {
                switchboard::bots::twilio_echo::run(listen)
                    .await
                    .map_err(|e| e.to_string())
            } else {
                switchboard::bots::echo_service::run(listen)
                    .await
                    .map_err(|e| e.to_string())
            }
        }),
    }
}

/// Runs one async command on a fresh runtime.
fn run_async(fut: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::from(1)
        }
    }
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    });
}
