//! A legacy scp upload or download as the file audit observes it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::fuzzing::scp(data));
