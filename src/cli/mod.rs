//! The `vipnas` command line: argument parsing and dispatch only; each command
//! lives in its own file and calls into the library.

/// `println!` that returns an error instead of panicking when stdout is
/// closed or full (`vipnas … | head -c1`, `> /dev/full`): `?` inside, so only
/// in functions returning `anyhow::Result`.
macro_rules! outln {
    ($($arg:tt)*) => {
        crate::cli::write_stdout(format_args!($($arg)*))?
    };
}

#[cfg(feature = "host")]
mod bench;
#[cfg(feature = "host")]
mod bench_train;
#[cfg(feature = "camera")]
mod camera;
mod config;
#[cfg(feature = "host")]
mod data;
#[cfg(feature = "host")]
mod eval;
mod export;
#[cfg(feature = "host")]
mod label;
mod profile;
mod run;
#[cfg(feature = "host")]
mod search;
#[cfg(feature = "host")]
mod search_temporal;
mod space;
mod subnet_args;
#[cfg(feature = "host")]
mod temporal;
#[cfg(feature = "host")]
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Real-time video pose estimation on edge boards (ViPNAS).
#[derive(Parser, Debug)]
#[command(name = "vipnas", version, about, propagate_version = true)]
#[command(
    after_help = "Examples:\n  vipnas space --space mbv3 --sample max --stats\n  vipnas export --space mbv3 --sample random --seed 1 --out /tmp/bundle"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Space(space::SpaceArgs),
    Export(export::ExportArgs),
    Run(run::RunArgs),
    Profile(profile::ProfileArgs),
    Predict(profile::PredictArgs),
    #[cfg(feature = "camera")]
    Camera(camera::CameraArgs),
    #[cfg(feature = "host")]
    Bench(bench::BenchArgs),
    #[cfg(feature = "host")]
    Eval(eval::EvalArgs),
    /// COCO-format set utilities.
    #[cfg(feature = "host")]
    #[command(subcommand)]
    Data(DataCommand),
    #[cfg(feature = "host")]
    Label(label::LabelArgs),
    #[cfg(feature = "host")]
    Train(train::TrainArgs),
    #[cfg(feature = "host")]
    TrainTemporal(temporal::TrainTemporalArgs),
    #[cfg(feature = "host")]
    Search(search::SearchArgs),
    #[cfg(feature = "host")]
    SearchTemporal(search_temporal::SearchTemporalArgs),
}

#[cfg(feature = "host")]
#[derive(Subcommand, Debug)]
enum DataCommand {
    Merge(data::DataArgs),
    Openpose(data::OpenPoseArgs),
    Fill(data::FillArgs),
}

/// Parses arguments, runs the command, prints errors as one line.
pub fn main() -> ExitCode {
    let cli = match config::expand(std::env::args_os().collect()) {
        Ok(args) => Cli::parse_from(args),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    vipnas::shutdown::install();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).format_timestamp_millis().init();
    let result = match cli.command {
        Command::Space(a) => space::run(a),
        Command::Export(a) => export::run(a),
        Command::Run(a) => run::run_cmd(a),
        Command::Profile(a) => profile::run_profile(a),
        Command::Predict(a) => profile::run_predict(a),
        #[cfg(feature = "camera")]
        Command::Camera(a) => camera::run(a),
        #[cfg(feature = "host")]
        Command::Bench(a) => bench::run(a),
        #[cfg(feature = "host")]
        Command::Eval(a) => eval::run(a),
        #[cfg(feature = "host")]
        Command::Data(DataCommand::Merge(a)) => data::run(a),
        #[cfg(feature = "host")]
        Command::Data(DataCommand::Openpose(a)) => data::run_openpose(a),
        #[cfg(feature = "host")]
        Command::Data(DataCommand::Fill(a)) => data::run_fill(a),
        #[cfg(feature = "host")]
        Command::Label(a) => label::run(a),
        #[cfg(feature = "host")]
        Command::Train(a) => train::run(a),
        #[cfg(feature = "host")]
        Command::TrainTemporal(a) => temporal::run(a),
        #[cfg(feature = "host")]
        Command::Search(a) => search::run(a),
        #[cfg(feature = "host")]
        Command::SearchTemporal(a) => search_temporal::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): what it wanted it has; like other
        // Unix tools, stop quietly.
        Err(e) if e.downcast_ref::<StdoutError>().is_some_and(|s| s.0.kind() == std::io::ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<vipnas::shutdown::Interrupted>() {
                Some(stop) => ExitCode::from(stop.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// A failed write to stdout.
#[derive(Debug)]
struct StdoutError(std::io::Error);

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot write to stdout: {}", self.0)
    }
}

impl std::error::Error for StdoutError {}

/// One line to stdout (what [`outln!`] expands to).
fn write_stdout(args: std::fmt::Arguments) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| StdoutError(e).into())
}
