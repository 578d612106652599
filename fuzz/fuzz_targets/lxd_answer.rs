//! An answer from the LXD daemon, and the records read from it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_runtime::fuzzing::lxd_answer(data));
