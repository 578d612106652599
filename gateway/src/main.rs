//! The `gatehouse` binary: SSH gateway, admin commands, and the container supervisor
//! (all of it in the library target, `src/lib.rs`).

fn main() -> std::process::ExitCode {
    gatehouse::main()
}
