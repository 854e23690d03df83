//! The `gatehouse` binary: a thin shell around [`gatehouse::cli`].

#![forbid(unsafe_code)]

/// mimalloc: the proxy path makes many small, short-lived allocations (header maps,
/// buffers); glibc's malloc spent ~5 % of the signed-in path's CPU on them (bench/README.md).
/// The `system-allocator` feature leaves it out, for heap profilers (bench/idle-heap.sh).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gatehouse::cli::main()
}
