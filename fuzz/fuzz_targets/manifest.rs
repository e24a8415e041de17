#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vipnas::fuzzing::Target::Manifest.run(data);
});
