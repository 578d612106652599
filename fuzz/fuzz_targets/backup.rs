//! What `container restore` reads from a backup before installing it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_runtime::fuzzing::backup(data));
