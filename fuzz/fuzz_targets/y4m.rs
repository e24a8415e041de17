#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vipnas::fuzzing::Target::Y4m.run(data);
});
