#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgsluice::fuzz::startup(data));
