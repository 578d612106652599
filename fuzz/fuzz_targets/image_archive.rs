//! An image archive given to `image import` (tar, tar.gz, tar.zst).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_runtime::fuzzing::image_archive(data));
