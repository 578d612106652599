//! A policy file: parsed, then asked one question and explained.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::fuzzing::policy(data));
