//! An exec request's command, as the scp/rsync recogniser and the scp observer read it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::fuzzing::transfer_command(data));
