//! The SSH user name a client sends (`user@login@container`, `user@+admin`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::fuzzing::user_name(data));
