#![no_main]
// Needs the host build: `scripts/fuzz.sh` passes `--features host` for it.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vipnas::fuzzing::Target::Weights.run(data);
});
