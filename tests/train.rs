//! `vipnas train` and `vipnas export --checkpoint` end to end on the bundled
//! clip: a short run learns (loss falls, PCK on held-out frames beats the
//! untrained supernet by a margin), a killed run resumes bit-exactly, bad
//! checkpoints or mismatched settings are refused by name, and the supernet the
//! repository keeps still loads and is trained.
//!
//! The held-out frames are the clip's last 15 (of 50, 60 fps): the same
//! runner on the same treadmill, later in time — a weak hold-out; the real
//! run in docs/training.md holds out a whole camera view.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use vipnas::host::coco::CocoDataset;
use vipnas::host::eval::{pck, predict, RoiMode};
use vipnas::host::train::checkpoint::Checkpoint;
use vipnas::runtime::PoseModel;

const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pose2sim-cam03");

fn vipnas(args: &[&str]) -> Output {
    common::vipnas_command().args(args).output().expect("vipnas runs")
}

fn ok(o: Output) -> String {
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "vipnas failed:\n{out}\n{err}");
    out.into_owned()
}

/// A failed run: non-zero exit, no panic, one `error:` line containing `needle`.
fn fails_with(o: Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "expected a failure");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "stderr lacks `{needle}`:\n{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "error is not one line:\n{err}");
    err
}

/// The clip split in time: frames before `cut` and from `cut` on, as COCO files in `dir`.
fn split(dir: &Path, cut: u64) -> (PathBuf, PathBuf) {
    let all = CocoDataset::load(Path::new(&format!("{CLIP}.json"))).unwrap();
    let part = |keep: &dyn Fn(u64) -> bool, name: &str| {
        let mut d = all.clone();
        d.images.retain(|im| keep(im.frame_index.unwrap()));
        let ids: Vec<u64> = d.images.iter().map(|im| im.id).collect();
        d.annotations.retain(|a| ids.contains(&a.image_id));
        let path = dir.join(name);
        std::fs::write(&path, serde_json::to_vec(&d).unwrap()).unwrap();
        path
    };
    (part(&|f| f < cut, "train.json"), part(&|f| f >= cut, "val.json"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_short_run_learns_poses_that_hold_on_later_frames() {
    let dir = common::scratch("train-learns");
    let (train, val) = split(&dir, 35);
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec!["train", "--space", "mbv3", "--coco", s(&train), "--images", CLIP, "--input", "64x64"];
        args.extend(["--batch", "8", "--steps", "80", "--randoms", "1", "--lr", "2e-3", "--out", s(out)]);
        args.extend(extra);
        ok(vipnas(&args))
    };
    let (trained, untrained) = (dir.join("run"), dir.join("untrained"));
    let t = Instant::now();
    let out = run(&trained, &[]);
    println!("{out}80 steps in {:.0} s", t.elapsed().as_secs_f64());
    run(&untrained, &["--stop-after", "0"]);

    // The max subnet's loss (labels) falls.
    let rows = vipnas::host::train::losses::read_losses(&trained.join("losses.tsv"), u64::MAX).unwrap();
    assert_eq!(rows.len(), 80);
    let mean = |r: &[vipnas::host::train::LossRow]| r.iter().map(|r| r.losses[0]).sum::<f64>() / r.len() as f64;
    let (first, last) = (mean(&rows[..10]), mean(&rows[70..]));
    println!("max subnet loss: first 10 steps {first:.4e}, last 10 {last:.4e}");
    assert!(last < 0.6 * first, "the loss did not fall: {first} -> {last}");
    assert!(std::fs::read(trained.join("loss.png")).unwrap().starts_with(b"\x89PNG"));

    // Exported subnets, BN recalibrated, through the runtime on held-out frames.
    let gt = CocoDataset::load(&val).unwrap();
    for sample in ["max", "min"] {
        let mut pcks = Vec::new();
        for ckpt in [&untrained, &trained] {
            let bundle = dir.join(format!("{sample}-{}", ckpt.file_name().unwrap().to_str().unwrap()));
            let ck = ckpt.join("checkpoint.vnck");
            ok(vipnas(&["export", "--checkpoint", s(&ck), "--sample", sample, "--out", s(&bundle)]));
            let model = PoseModel::load(&bundle, 1).unwrap();
            let p = predict(model, &gt, Path::new(CLIP), RoiMode::GtBox).unwrap();
            pcks.push(pck(&gt, &p.results, &[0.2]).overall[0]);
        }
        println!("{sample} subnet: PCK@0.2 on frames 35-49: untrained {:.3}, trained {:.3}", pcks[0], pcks[1]);
        assert!(pcks[1] > pcks[0] + 0.2, "{sample}: trained {} vs untrained {}", pcks[1], pcks[0]);
    }
    // The trained bundle runs in the product's runtime.
    let o =
        ok(vipnas(&["run", "--model", s(&dir.join("max-run")), "--source", &format!("dir:{CLIP}"), "--frames", "5"]));
    assert!(o.contains("frames=5"), "{o}");
    // `eval --refine`: quarter-bin by default for a spatial net; DARK moves its keypoints.
    let results = |refine: Option<&str>| {
        let path = dir.join(format!("results-{}.json", refine.unwrap_or("default")));
        let model = dir.join("max-run");
        let mut args = vec!["eval", "--model", s(&model), "--coco", s(&val), "--images", CLIP];
        args.extend(["--roi", "gt", "--results", s(&path)]);
        args.extend(refine.map(|r| ["--refine", r]).iter().flatten());
        ok(vipnas(&args));
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).unwrap()).unwrap()
    };
    let (default, quarter, dark) = (results(None), results(Some("quarter")), results(Some("dark")));
    assert_eq!(default, quarter);
    assert_eq!(dark.as_array().unwrap().len(), quarter.as_array().unwrap().len());
    assert_ne!(dark, quarter, "DARK decoded the same keypoints as the quarter step");
}

/// The trained supernet the repository keeps (`models/mbv3-supernet`, weights
/// only) still fits this vipnas — a changed supernet layout would strand it —
/// and is trained: on the bundled clip, a camera view it never saw, its max
/// subnet places keypoints where the same subnet with random weights does not.
/// (BatchNorm is recalibrated on the clip's own crops: image statistics, no labels.)
#[test]
fn the_kept_supernet_fits_this_vipnas_and_its_max_subnet_finds_poses_on_an_unseen_view() {
    let dir = common::scratch("train-kept");
    let kept = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mbv3-supernet/supernet.vnck");
    let clip = format!("{CLIP}.json");
    let (trained, random) = (dir.join("trained"), dir.join("random"));
    let mut args = vec!["export", "--checkpoint", s(&kept), "--sample", "max", "--calib-coco", &clip];
    args.extend(["--calib-dir", CLIP, "--calib-images", "64", "--out", s(&trained)]);
    ok(vipnas(&args));
    let header = Checkpoint::read_header(&kept).unwrap();
    let input = header.config.input.to_string();
    ok(vipnas(&["export", "--space", "mbv3", "--sample", "max", "--input", &input, "--out", s(&random)]));
    let gt = CocoDataset::load(Path::new(&clip)).unwrap();
    let pcks: Vec<f64> = [&random, &trained]
        .iter()
        .map(|b| {
            let p = predict(PoseModel::load(b, 1).unwrap(), &gt, Path::new(CLIP), RoiMode::GtBox).unwrap();
            pck(&gt, &p.results, &[0.2]).overall[0]
        })
        .collect();
    println!(
        "kept supernet (step {}), max subnet, PCK@0.2: random weights {:.3}, trained {:.3}",
        header.step, pcks[0], pcks[1]
    );
    assert!(pcks[1] > 0.5 && pcks[1] > pcks[0] + 0.3, "trained {} vs random {}", pcks[1], pcks[0]);
}

/// The checkpoint with `"format_version": 2` in its header.
fn other_version(b: &[u8]) -> Vec<u8> {
    let key = b"\"format_version\": 1";
    let at = b.windows(key.len()).position(|w| w == key).expect("a version field");
    let mut v = b.to_vec();
    v[at + key.len() - 1] = b'2';
    v
}

fn small_run(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["train", "--space", "mbv3", "--coco", &format!("{CLIP}.json"), "--images", CLIP]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for a in ["--input", "64x64", "--batch", "4", "--steps", "6", "--checkpoint-every", "2", "--out", s(out)] {
        v.push(a.into());
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[test]
fn a_killed_run_resumes_exactly_and_bad_checkpoints_are_refused() {
    let dir = common::scratch("train-resume");
    let (whole, killed) = (dir.join("whole"), dir.join("killed"));
    ok(common::vipnas_command().args(small_run(&whole, &[])).output().unwrap());

    // Kill the second run as soon as its first checkpoint is on disk.
    let mut child = common::vipnas_command()
        .args(small_run(&killed, &[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ck = killed.join("checkpoint.vnck");
    let t = Instant::now();
    while !ck.exists() {
        assert!(t.elapsed() < Duration::from_secs(300), "no checkpoint after 5 minutes");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at = Checkpoint::read_header(&ck).unwrap().step;
    assert!(at < 6, "killed before the end (at step {at})");
    let out = ok(common::vipnas_command().args(small_run(&killed, &[])).output().unwrap());
    assert!(out.contains(&format!("(resumed at {at})")), "{out}");
    let (a, b) = (std::fs::read(whole.join("checkpoint.vnck")).unwrap(), std::fs::read(&ck).unwrap());
    println!("killed at step {at}, resumed: checkpoints of {} bytes, identical: {}", a.len(), a == b);
    assert!(a == b, "the resumed run's final checkpoint differs from the uninterrupted run's");

    // Other settings on resume: refused, naming what differs.
    let o = common::vipnas_command().args(small_run(&killed, &["--lr", "0.002"])).output().unwrap();
    fails_with(o, "was made with other settings (lr: checkpoint 0.001, now 0.002)");
    // A training set with a keypoint array of the wrong length: refused before training.
    let mut bad: serde_json::Value = serde_json::from_slice(&std::fs::read(format!("{CLIP}.json")).unwrap()).unwrap();
    bad["annotations"][3]["keypoints"].as_array_mut().unwrap().pop();
    let bad_path = dir.join("bad.json");
    std::fs::write(&bad_path, bad.to_string()).unwrap();
    let mut args = small_run(&dir.join("bad-run"), &[]);
    args[4] = s(&bad_path).into();
    let o = common::vipnas_command().args(&args).output().unwrap();
    fails_with(o, "bad.json: annotations[3] (id 3000031): `keypoints` has 50 values, expected 51");
    assert!(!dir.join("bad-run/checkpoint.vnck").exists());
    // A subnet of another space.
    let o = vipnas(&["export", "--checkpoint", s(&ck), "--space", "resnet50", "--out", s(&dir.join("x"))]);
    fails_with(o, "holds the mbv3 supernet; the subnet is of the resnet50 space");
    // Damaged, truncated, not a checkpoint, another format version.
    let mut damaged = b.clone();
    let n = damaged.len();
    damaged[n - 100] ^= 1;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("damaged", damaged, "damaged: the payload's hash differs from the header's"),
        ("truncated", b[..n - 4].to_vec(), "truncated or padded"),
        ("notes", b"hello".to_vec(), "not a vipnas training checkpoint"),
        ("v2", other_version(&b), "format_version 2 — this vipnas"),
    ];
    for (name, bytes, needle) in cases {
        let path = dir.join(format!("{name}.vnck"));
        std::fs::write(&path, bytes).unwrap();
        let o = vipnas(&["export", "--checkpoint", s(&path), "--sample", "max", "--out", s(&dir.join("y"))]);
        let err = fails_with(o, needle);
        assert!(err.contains(&format!("checkpoint {}", path.display())), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn a_teacher_labels_unlabelled_frames_into_the_training_set() {
    let dir = common::scratch("train-teacher");
    let out = dir.join("run");
    let teacher = concat!(env!("CARGO_MANIFEST_DIR"), "/models/movenet-lightning");
    // The clip's own frames stand in for unlabelled ones.
    let mut args = small_run(&out, &["--teacher", teacher, "--unlabelled", CLIP]);
    let i = args.iter().position(|a| a == "--steps").unwrap();
    args[i + 1] = "2".into();
    let o = ok(common::vipnas_command().args(&args).output().unwrap());
    assert!(o.contains("movenet-lightning: ") && o.contains(" of 50 frames of "), "{o}");
    let set = CocoDataset::load(&out.join("teacher-set.json")).unwrap();
    let (labelled, taught) = set.annotations.split_at(50);
    println!("{} images, {} labelled + {} teacher annotations", set.images.len(), labelled.len(), taught.len());
    assert_eq!(set.images.len(), 100);
    assert!(taught.len() >= 45, "the teacher labels most frames of a clear single person");
    // The teacher's keypoints on a frame agree with the labels of the same frame.
    let frame = |a: &vipnas::host::coco::CocoAnnotation| {
        let im = set.images.iter().find(|im| im.id == a.image_id).unwrap();
        Path::new(&im.file_name).file_name().unwrap().to_owned()
    };
    let (mut close, mut total) = (0, 0);
    for t in taught {
        let l = labelled.iter().find(|l| frame(l) == frame(t)).unwrap();
        let size = l.bbox[2].max(l.bbox[3]);
        for k in 0..17 {
            if t.keypoints[3 * k + 2] > 0.0 && l.keypoints[3 * k + 2] > 0.0 {
                let d =
                    (t.keypoints[3 * k] - l.keypoints[3 * k]).hypot(t.keypoints[3 * k + 1] - l.keypoints[3 * k + 1]);
                close += (d < 0.1 * size) as usize;
                total += 1;
            }
        }
    }
    println!("teacher vs labels: {close}/{total} keypoints within 0.1 of the box");
    assert!(close as f64 > 0.9 * total as f64);
    // --teacher alone is refused by the parser.
    let o = common::vipnas_command().args(small_run(&dir.join("x"), &["--teacher", teacher])).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--unlabelled <DIR>"));
}

#[test]
fn a_teacher_fills_the_keypoints_a_set_lacks_and_weighs_them_by_its_score() {
    let dir = common::scratch("train-fill");
    // The clip's human labels without the five face points (as LSPet has them).
    let mut lacking = CocoDataset::load(Path::new(&format!("{CLIP}.json"))).unwrap();
    let human = lacking.clone();
    for a in &mut lacking.annotations {
        a.keypoints[..15].iter_mut().for_each(|v| *v = 0.0);
    }
    let input = dir.join("lacking.json");
    std::fs::write(&input, serde_json::to_vec(&lacking).unwrap()).unwrap();
    let out = dir.join("filled.json");
    let teacher = concat!(env!("CARGO_MANIFEST_DIR"), "/models/movenet-lightning");
    let o =
        ok(vipnas(&["data", "fill", "--teacher", teacher, "--coco", s(&input), "--images", CLIP, "--out", s(&out)]));
    println!("{o}");
    let filled = CocoDataset::load(&out).unwrap();
    let (mut faces, mut both, mut close) = (0, 0, 0);
    for (f, (h, l)) in filled.annotations.iter().zip(human.annotations.iter().zip(&lacking.annotations)) {
        let w = f.keypoint_weights.as_ref().expect("weights written");
        assert_eq!(&f.keypoints[15..], &l.keypoints[15..], "labelled keypoints stay");
        assert!(w[5..].iter().zip(l.keypoints[15..].chunks(3)).all(|(w, k)| (*w == 1.0) == (k[2] > 0.0)));
        let size = h.bbox[2].max(h.bbox[3]);
        for k in 0..5 {
            let (fk, hk) = (&f.keypoints[3 * k..3 * k + 3], &h.keypoints[3 * k..3 * k + 3]);
            if fk[2] > 0.0 {
                assert!((0.4..=1.0).contains(&w[k]), "a filled keypoint weighs its score: {}", w[k]);
                faces += 1;
                if hk[2] > 0.0 {
                    both += 1;
                    close += ((fk[0] - hk[0]).hypot(fk[1] - hk[1]) < 0.1 * size) as usize;
                }
            } else {
                assert_eq!(w[k], 0.0);
            }
        }
    }
    // (Some filled points are ones the human labels lack too: the far eye and ear of a side view.)
    println!("filled {faces} face points; of the {both} the human labels have, {close} within 0.1 of the box");
    assert!(faces >= 150, "most of the 250 face points of a clear runner are filled");
    assert!(both >= 100 && close as f64 >= 0.95 * both as f64);
    assert!(o.contains(&format!("{faces} keypoints filled")), "{o}");
    // A bad weight in the extension field is refused by item.
    let mut bad = filled.clone();
    bad.annotations[3].keypoint_weights.as_mut().unwrap()[0] = 1.5;
    std::fs::write(&input, serde_json::to_vec(&bad).unwrap()).unwrap();
    fails_with(
        vipnas(&["data", "fill", "--teacher", teacher, "--coco", s(&input), "--images", CLIP, "--out", s(&out)]),
        &format!("annotations[3] (id {}): `keypoint_weights` must be 17 values in [0, 1]", bad.annotations[3].id),
    );
}

/// A `.vnw` weights file with the given tensors (as `scripts/init-weights.py` writes).
fn weights_file(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let header = serde_json::json!({
        "format_version": 1, "space": "mbv3", "source": "a test", "licence": "none",
        "tensors": tensors.iter().map(|(n, s, _)| serde_json::json!({"name": n, "shape": s})).collect::<Vec<_>>(),
    });
    let json = serde_json::to_vec(&header).unwrap();
    let mut b = b"VIPNAS-WEIGHTS\n".to_vec();
    b.extend((json.len() as u64).to_le_bytes());
    b.extend(json);
    tensors.iter().flat_map(|(_, _, v)| v).for_each(|v| b.extend(v.to_le_bytes()));
    std::fs::write(path, b).unwrap();
}

#[test]
fn initial_weights_go_into_the_supernet_and_a_bad_file_is_refused() {
    let dir = common::scratch("train-init");
    let init = dir.join("init.vnw");
    // A 3x3 stem for the 16-channel stem, and a 3x3 depthwise filter set inside stage 2's 7x7 grouped conv.
    let stem: Vec<f32> = (0..16 * 27).map(|i| (i as f32 * 0.37).sin()).collect();
    let dw: Vec<f32> = (0..144 * 9).map(|i| (i as f32 * 0.11).cos()).collect();
    weights_file(
        &init,
        &[
            ("stem.conv.weight", vec![16, 3, 3, 3], stem.clone()),
            ("stage2.block0.dw.weight", vec![144, 1, 3, 3], dw.clone()),
        ],
    );
    let out = dir.join("run");
    ok(common::vipnas_command().args(small_run(&out, &["--init", s(&init), "--stop-after", "0"])).output().unwrap());
    let c = Checkpoint::load(&out.join("checkpoint.vnck")).unwrap();
    assert_eq!(c.header.config.init.as_deref(), Some(init.canonicalize().unwrap().as_path()));
    assert_eq!(c.weights.tensors["stem.conv.weight"].data, stem);
    let big = &c.weights.tensors["stage2.block0.dw.weight"];
    assert_eq!(big.shape, vec![144, 16, 7, 7]);
    assert_eq!(big.elastic_slice(&[144, 1, 3, 3]).unwrap().data, dw);
    assert_eq!(big.data.iter().filter(|v| **v != 0.0).count(), dw.iter().filter(|v| **v != 0.0).count());
    assert_eq!(c.header.data_start, 0, "a run from a weights file starts the batch stream");
    // Two steps of 4 crops, then a run from that checkpoint: its batches go on
    // from the 8th sample of the stream instead of replaying the first run's.
    ok(common::vipnas_command().args(small_run(&out, &["--init", s(&init), "--stop-after", "2"])).output().unwrap());
    let next = dir.join("next");
    let ck = out.join("checkpoint.vnck");
    let o =
        ok(common::vipnas_command().args(small_run(&next, &["--init", s(&ck), "--stop-after", "0"])).output().unwrap());
    assert!(o.contains("batches go on from sample 8 of seed 0's stream (epoch 0)"), "{o}");
    assert_eq!(Checkpoint::read_header(&next.join("checkpoint.vnck")).unwrap().data_start, 8);
    // Its weights-only copy (what the repository keeps) does the same, stands
    // without the pretrained file, and cannot be resumed as a run.
    let lean = dir.join("lean");
    let o = ok(vipnas(&["export", "--checkpoint", s(&ck), "--weights-only", "--out", s(&lean)]));
    assert!(o.contains("supernet at step 2, weights only, f16"), "{o}");
    let lean = lean.join("supernet.vnck");
    assert!(std::fs::metadata(&lean).unwrap().len() * 5 < std::fs::metadata(&ck).unwrap().len(), "a sixth or so");
    let full = Checkpoint::load(&ck).unwrap();
    let half = Checkpoint::load(&lean).unwrap();
    assert!(half.moments.is_empty() && half.header.data_start == full.header.data_start);
    std::fs::remove_file(&init).unwrap();
    let again = dir.join("again");
    let o = ok(common::vipnas_command()
        .args(small_run(&again, &["--init", s(&lean), "--stop-after", "0"]))
        .output()
        .unwrap());
    assert!(o.contains("batches go on from sample 8 of seed 0's stream"), "{o}");
    assert!(o.contains("initialised from a test (weights only, as f16"), "{o}");
    let bundle = dir.join("lean-min");
    ok(vipnas(&["export", "--checkpoint", s(&lean), "--sample", "min", "--out", s(&bundle)]));
    let manifest = std::fs::read_to_string(bundle.join("manifest.json")).unwrap();
    assert!(manifest.contains("weights only (f16) of vipnas training run"), "{manifest}");
    std::fs::copy(&lean, again.join("checkpoint.vnck")).unwrap();
    let o = common::vipnas_command().args(small_run(&again, &["--init", s(&lean)])).output().unwrap();
    fails_with(o, "is weights only (no optimiser state) and cannot be resumed: continue from it with --init");
    // A tensor the supernet lacks: refused before training, naming file and tensor.
    weights_file(&init, &[("stage9.block0.dw.weight", vec![1], vec![1.0])]);
    let o = common::vipnas_command().args(small_run(&dir.join("bad"), &["--init", s(&init)])).output().unwrap();
    fails_with(o, "the mbv3 supernet has no tensor `stage9.block0.dw.weight`");
}

#[test]
fn a_signal_stops_training_at_a_checkpoint_and_the_same_command_resumes() {
    let dir = common::scratch("train-signal");
    let out = dir.join("run");
    let mut args = small_run(&out, &[]);
    let i = args.iter().position(|a| a == "--steps").unwrap();
    args[i + 1] = "100000".into();
    let mut child = common::vipnas_command()
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // losses.tsv gets its rows at the first checkpoint (step 2).
    common::wait_for_lines(&out.join("losses.tsv"), 3, &mut child);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("checkpoint saved; the same command resumes from it"), "{err}");
    let step = Checkpoint::load(&out.join("checkpoint.vnck")).unwrap().header.step;
    assert!(step >= 2);
    let rows = std::fs::read_to_string(out.join("losses.tsv")).unwrap().lines().count() as u64;
    assert_eq!(rows, step + 1, "a loss row per step done, and the header");
    args.extend(["--stop-after".into(), "1".into()]);
    let o = ok(common::vipnas_command().args(&args).output().unwrap());
    assert!(o.contains(&format!("(resumed at {step})")), "{o}");
}

#[test]
fn the_max_subnet_trains_alone_first_and_a_run_with_helper_models_resumes_exactly() {
    let dir = common::scratch("train-max-alone");
    let lightning = concat!(env!("CARGO_MANIFEST_DIR"), "/models/movenet-lightning");
    let segmenter = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/selfie-segmentation.onnx");
    let backgrounds = dir.join("backgrounds");
    std::fs::create_dir_all(&backgrounds).unwrap();
    std::fs::copy(format!("{CLIP}/000040.jpg"), backgrounds.join("room.jpg")).unwrap();
    let extra = [
        "--max-alone",
        "3",
        "--randoms",
        "1",
        "--dense-teacher",
        lightning,
        "--paste-backgrounds",
        s(&backgrounds),
        "--segmenter",
        segmenter,
        "--paste-prob",
        "0.5",
    ];
    let (whole, parts) = (dir.join("whole"), dir.join("parts"));
    let out = ok(common::vipnas_command().args(small_run(&whole, &extra)).output().unwrap());
    assert!(out.contains("the max subnet alone for 3 steps, then each through 3 subnets"), "{out}");
    // Steps 0–2 train the max subnet alone: the others' columns are NaN, then numbers.
    let tsv = std::fs::read_to_string(whole.join("losses.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = tsv.lines().skip(1).map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 6, "{tsv}");
    for (step, row) in rows.iter().enumerate() {
        let (max, min, random): (f64, f64, f64) =
            (row[2].parse().unwrap(), row[3].parse().unwrap(), row[4].parse().unwrap());
        assert!(max.is_finite() && max > 0.0, "step {step}: {row:?}");
        assert_eq!(step >= 3, min.is_finite() && random.is_finite(), "step {step}: {row:?}");
    }
    // Stopped after 4 steps and resumed, the dense teacher's targets and paste-in included: the same run.
    let mut first = small_run(&parts, &extra);
    first.extend(["--stop-after".to_string(), "4".to_string()]);
    ok(common::vipnas_command().args(first).output().unwrap());
    let out = ok(common::vipnas_command().args(small_run(&parts, &extra)).output().unwrap());
    assert!(out.contains("(resumed at 4)") && out.contains("/s, each through 3 subnets)"), "{out}");
    let (a, b) =
        (std::fs::read(whole.join("checkpoint.vnck")).unwrap(), std::fs::read(parts.join("checkpoint.vnck")).unwrap());
    assert!(a == b, "the resumed run's final checkpoint differs from the uninterrupted run's");
    // A dense term of no weight, and a teacher that is not MoveNet SinglePose.
    let o = common::vipnas_command()
        .args(small_run(&dir.join("zero"), &["--dense-teacher", lightning, "--dense-weight", "0"]))
        .output()
        .unwrap();
    fails_with(o, "--dense-weight must be a positive number");
    let o = common::vipnas_command().args(small_run(&dir.join("clip"), &["--dense-teacher", CLIP])).output().unwrap();
    fails_with(o, "--dense-teacher");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = common::vipnas_command()
        .args(small_run(&dir.join("nobg"), &["--paste-backgrounds", s(&empty), "--segmenter", segmenter]))
        .output()
        .unwrap();
    fails_with(o, "empty: no background photos (.jpg, .jpeg, .png)");
}
