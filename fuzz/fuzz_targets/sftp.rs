//! An SFTP conversation as the file audit observes it (client and server chunks).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::fuzzing::sftp(data));
