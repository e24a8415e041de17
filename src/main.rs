//! The `vipnas` binary: see `vipnas --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
