//! A recording file (asciicast v2), read and rendered as `replay --text` does.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::fuzzing::asciicast(data));
