//! The `gatehouse` binary: a thin shell around [`gatehouse::cli`].

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    gatehouse::cli::main()
}
