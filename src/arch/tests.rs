//! Tests of the search spaces against the tables as printed, of subnet
//! validation and sampling, and of lowering and counting against mmpose.

use super::lower::gcd;
use super::net::Op;
use super::published::published;
use super::space::{AttentionKind, BlockSpace, Operator};
use super::*;

/// The three tables exactly as the supplementary material prints them.
const PRINTED: &str = include_str!("tables-as-printed.tsv");

/// `[a, b]` → (a, b); `-` → None.
fn pair(field: &str) -> Option<(u32, u32)> {
    let f = field.trim();
    let inner = f.strip_prefix('[')?.strip_suffix(']')?;
    let (a, b) = inner.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

fn resolution(field: &str) -> u32 {
    field.trim().strip_prefix("1/").expect("1/n").parse().expect("n")
}

fn operator_name(op: Operator) -> &'static str {
    match op {
        Operator::Conv => "Conv",
        Operator::ConvPool => "Conv+Pool",
        Operator::MobileBlock => "Mobile Block",
        Operator::Bottleneck => "Bottleneck",
        Operator::BasicBlock => "BasicBlock",
        Operator::Deconv => "Deconv",
    }
}

/// Printed rows of table `n` (1-based), header dropped, fields split on tabs.
fn printed_rows(n: usize) -> Vec<Vec<String>> {
    let mut tables: Vec<Vec<Vec<String>>> = Vec::new();
    for line in PRINTED.lines() {
        if line.starts_with("# Table") {
            tables.push(Vec::new());
        } else if !line.starts_with("Stage") && !line.trim().is_empty() {
            tables.last_mut().expect("table").push(line.split('\t').map(str::to_string).collect());
        }
    }
    tables.swap_remove(n - 1)
}

/// Compares a printed row (width, kernel, group, attention, resolution) with ours.
fn assert_row(row: &BlockSpace, op: &str, width: &str, kernel: &str, group: &str, att: &str, res: &str) {
    assert_eq!(operator_name(row.operator), op);
    assert_eq!(pair(width), Some((row.width.min, row.width.max)), "{op} width");
    assert_eq!(pair(kernel), Some((row.kernel.min, row.kernel.max)), "{op} kernel");
    assert_eq!(pair(group), Some((row.group.min, row.group.max)), "{op} group");
    assert_eq!(pair(att).is_some(), row.attention_searchable, "{op} attention");
    assert_eq!(resolution(res), row.printed_resolution, "{op} resolution");
}

#[test]
fn tables_1_and_2_match_print_row_by_row() {
    for (n, space) in [(1, SpaceName::Mbv3), (2, SpaceName::Resnet50)] {
        let s = SearchSpace::get(space);
        let rows = printed_rows(n);
        assert_eq!(rows.len(), s.stages.len() + 2, "table {n}: stem + stages + head");
        let f = |r: &Vec<String>, i: usize| r[i].clone();
        // Stage  Operator  Depth  Width  Kernel  Group  Attention  Expansion  Resolution
        let stem = &rows[0];
        assert_row(&s.stem, &f(stem, 1), &f(stem, 3), &f(stem, 4), &f(stem, 5), &f(stem, 6), &f(stem, 8));
        for (r, stage) in rows[1..rows.len() - 1].iter().zip(&s.stages) {
            assert_eq!(r[0].parse::<usize>().unwrap(), stage.index);
            assert_eq!(pair(&r[2]), Some((stage.depth.min, stage.depth.max)), "table {n} stage {} depth", stage.index);
            let b = &stage.branches[0];
            assert_row(b, &r[1], &r[3], &r[4], &r[5], &r[6], &r[8]);
            assert_eq!(pair(&r[7]), Some((b.expansion.min, b.expansion.max)), "table {n} expansion");
        }
        let head = rows.last().unwrap();
        assert_row(s.head.as_ref().unwrap(), &head[1], &head[3], &head[4], &head[5], &head[6], &head[8]);
    }
}

#[test]
fn table_3_matches_print_row_by_row() {
    let s = SearchSpace::get(SpaceName::HrnetW32);
    let rows = printed_rows(3);
    // Stage  Depth  Branch  Operator  Width  Kernel  Group  Attention  Resolution
    let stem = &rows[0];
    assert_row(&s.stem, &stem[3], &stem[4], &stem[5], &stem[6], &stem[7], &stem[8]);
    let mut stage_idx = 0;
    for r in &rows[1..] {
        if !r[0].is_empty() {
            stage_idx = r[0].parse::<usize>().unwrap();
            let stage = &s.stages[stage_idx - 1];
            assert_eq!(pair(&r[1]), Some((stage.depth.min, stage.depth.max)), "stage {stage_idx} depth");
        }
        let branch: usize = r[2].parse().unwrap();
        let b = &s.stages[stage_idx - 1].branches[branch - 1];
        assert_row(b, &r[3], &r[4], &r[5], &r[6], &r[7], &r[8]);
        assert_eq!(b.attention, AttentionKind::Se);
    }
    let printed_branches: usize = rows.len() - 1;
    assert_eq!(s.stages.iter().map(|st| st.branches.len()).sum::<usize>(), printed_branches);
    assert!(s.head.is_none());
}

#[test]
fn steps_are_the_documented_ones() {
    let r = SearchSpace::get(SpaceName::Resnet50);
    // The paper: depth 1, width 16, kernel 2, group 16.
    let st = &r.stages[2];
    assert_eq!(st.depth.choices(), vec![6, 7, 8]);
    assert_eq!(st.branches[0].width.choices(), vec![256, 272, 288, 304, 320]);
    assert_eq!(st.branches[0].kernel.choices(), vec![3, 5]);
    assert_eq!(st.branches[0].group.choices(256), vec![16, 32, 64]);
    let m = SearchSpace::get(SpaceName::Mbv3);
    assert_eq!(m.stages[1].branches[0].kernel.choices(), vec![3, 5, 7]);
    assert_eq!(m.stages[1].branches[0].expansion.choices(), vec![3, 4, 5, 6]);
    let h = SearchSpace::get(SpaceName::HrnetW32);
    assert_eq!(h.stages[2].depth.choices(), vec![8, 12, 16]);
    assert_eq!(h.stages[3].branches[3].width.choices(), vec![64, 128, 192, 256]);
}

#[test]
fn group_rule_keeps_divisors_inside_the_printed_range() {
    let m = SearchSpace::get(SpaceName::Mbv3);
    let s2 = &m.stages[1].branches[0];
    // Expansion 3 over width 24: 72 inner channels, 1..8 channels per group.
    assert_eq!(s2.group.choices(s2.grouped_channels(24, 3)), vec![9, 18, 36, 72]);
    assert_eq!(s2.group.choices(144), vec![9, 18, 36, 72, 144]);
    // Stage 4 at expansion 3: 240 channels, but 15 groups is below the printed 30.
    let s4 = &m.stages[3].branches[0];
    assert_eq!(s4.group.choices(240), vec![30, 60, 120, 240]);
    assert_eq!(m.stages[0].branches[0].group.choices(16), vec![2, 4, 8, 16]);
    assert_eq!(m.head.as_ref().unwrap().group.choices(256), vec![32, 64, 128, 256]);
    // ResNet width 80 admits only 16 of {16, 32, 48, 64}.
    let r = SearchSpace::get(SpaceName::Resnet50);
    assert_eq!(r.stages[0].branches[0].group.choices(80), vec![16]);
    assert_eq!(r.stages[0].branches[0].group.choices(64), vec![16, 32, 64]);
    assert_eq!(r.stages[0].branches[0].group.choices(96), vec![16, 32, 48]);
    let h = SearchSpace::get(SpaceName::HrnetW32);
    assert_eq!(h.stages[1].branches[0].group.choices(24), vec![1, 2, 4, 8]);
    // Every width/expansion a space can produce has at least one group choice.
    for name in SpaceName::ALL {
        let s = SearchSpace::get(name);
        for row in s.stages.iter().flat_map(|st| &st.branches).chain(s.head.iter()) {
            for w in row.width.choices() {
                for e in row.expansion.choices() {
                    let c = row.grouped_channels(w, e);
                    let g = row.group.choices(c);
                    assert!(!g.is_empty(), "{name} {:?} width {w} expansion {e}", row.operator);
                    assert!(g.iter().all(|g| c % g == 0 && *g >= row.group.min && *g <= row.group.max));
                }
            }
        }
    }
}

#[test]
fn sampled_subnets_are_valid_and_cover_every_choice() {
    for name in SpaceName::ALL {
        let space = SearchSpace::get(name);
        let max = Subnet::sample(&space, Sample::Max);
        let min = Subnet::sample(&space, Sample::Min);
        max.validate().unwrap();
        min.validate().unwrap();
        let (cmax, cmin) =
            (max.network(InputSize::DEFAULT).unwrap().cost(), min.network(InputSize::DEFAULT).unwrap().cost());
        assert!(cmax.flops > 3 * cmin.flops && cmax.params > 3 * cmin.params, "{name}");
        let mut kernels = std::collections::BTreeSet::new();
        let mut depths = std::collections::BTreeSet::new();
        let mut attention = std::collections::BTreeSet::new();
        for seed in 0..300 {
            let s = Subnet::sample(&space, Sample::Random(seed));
            s.validate().unwrap_or_else(|e| panic!("{name} seed {seed}: {e}"));
            let c = s.network(InputSize::DEFAULT).unwrap().cost();
            assert!(c.flops >= cmin.flops && c.flops <= cmax.flops, "{name} seed {seed}");
            for st in &s.stages {
                depths.insert((st.depth, 0));
                for b in &st.branches {
                    kernels.insert(b.kernel);
                    attention.insert(b.attention);
                }
            }
        }
        let all_kernels: std::collections::BTreeSet<u32> =
            space.stages.iter().flat_map(|s| &s.branches).flat_map(|b| b.kernel.choices()).collect();
        assert_eq!(kernels, all_kernels, "{name}");
        assert_eq!(attention.len(), 2, "{name}");
        assert_eq!(Subnet::sample(&space, Sample::Random(5)), Subnet::sample(&space, Sample::Random(5)));
        assert_ne!(Subnet::sample(&space, Sample::Random(5)), Subnet::sample(&space, Sample::Random(6)));
    }
}

#[test]
fn mutations_crossovers_and_scaled_subnets_stay_valid() {
    for name in SpaceName::ALL {
        let space = SearchSpace::get(name);
        let mut rng = crate::arch::rng::Rng::new(3);
        let (mut changed, mut mixed) = (0, 0);
        for seed in 0..200 {
            let a = Subnet::sample(&space, Sample::Random(seed));
            let b = Subnet::sample(&space, Sample::Random(seed + 1000));
            let m = a.mutate(&space, 0.1, &mut rng);
            m.validate().unwrap_or_else(|e| panic!("{name} mutation of seed {seed}: {e}"));
            changed += (m != a) as usize;
            let c = a.crossover(&b, &mut rng);
            c.validate().unwrap_or_else(|e| panic!("{name} crossover of seed {seed}: {e}"));
            for (st, (x, y)) in c.stages.iter().zip(a.stages.iter().zip(&b.stages)) {
                assert!(st == x || st == y, "{name}: a crossover stage comes from a parent");
            }
            mixed += (c != a && c != b) as usize;
            assert_eq!(a.mutate(&space, 0.0, &mut rng), a, "probability 0 changes nothing");
        }
        // p = 0.1 over ~30 choices: most mutations change something.
        assert!(changed >= 100, "{name}: {changed} of 200 mutations changed the subnet");
        assert!(mixed > 150, "{name}: {mixed} of 200 crossovers mix both parents");
        assert_eq!(Subnet::sample(&space, Sample::Scaled(100)), Subnet::sample(&space, Sample::Max));
        assert_eq!(Subnet::sample(&space, Sample::Scaled(0)), Subnet::sample(&space, Sample::Min));
        let flops = |p| Subnet::sample(&space, Sample::Scaled(p)).network(InputSize::DEFAULT).unwrap().cost().flops;
        for p in [25, 50, 75] {
            Subnet::sample(&space, Sample::Scaled(p)).validate().unwrap();
        }
        assert!(
            flops(0) < flops(25) && flops(25) < flops(50) && flops(50) < flops(75) && flops(75) < flops(100),
            "{name}"
        );
    }
}

#[test]
fn validation_errors_name_stage_and_field() {
    let space = SearchSpace::get(SpaceName::Mbv3);
    let mut s = Subnet::sample(&space, Sample::Max);
    s.stages[2].branches[0].kernel = 4;
    assert_eq!(s.validate().unwrap_err().to_string(), "stage 3: kernel 4 not in {3,5,7}");
    let mut s = Subnet::sample(&space, Sample::Max);
    s.stages[1].branches[0].group = 10;
    assert_eq!(
        s.validate().unwrap_err().to_string(),
        "stage 2: group 10 not in {9,18,36,72,144} (valid for 144 channels)"
    );
    let mut s = Subnet::sample(&space, Sample::Max);
    s.stages[4].depth = 5;
    assert_eq!(s.validate().unwrap_err().to_string(), "stage 5: depth 5 not in {2,3,4}");
    let mut s = Subnet::sample(&space, Sample::Max);
    s.head = Some(subnet::HeadChoice { width: 256, group: 48 });
    assert_eq!(s.validate().unwrap_err().to_string(), "head: group 48 not in {32,64,128,256}");
    s.stages.pop();
    assert_eq!(s.validate().unwrap_err().to_string(), "subnet: mbv3 has 6 stages, got 5");

    let h = SearchSpace::get(SpaceName::HrnetW32);
    let mut s = Subnet::sample(&h, Sample::Min);
    s.stages[2].branches[1].width = 40;
    assert_eq!(s.validate().unwrap_err().to_string(), "stage 3 branch 2: width 40 not in {16,32,48,64}");
    let r = SearchSpace::get(SpaceName::Resnet50);
    let mut s = Subnet::sample(&r, Sample::Min);
    s.stem.width = 40;
    assert_eq!(s.validate().unwrap_err().to_string(), "stem: width 40 not in {32,48,64}");
}

#[test]
fn json_round_trip_and_parse_errors() {
    for name in SpaceName::ALL {
        let s = Subnet::sample(&SearchSpace::get(name), Sample::Random(3));
        let text = serde_json::to_string_pretty(&s).unwrap();
        assert_eq!(Subnet::from_json(&text, "x.json").unwrap(), s);
    }
    let text = r#"{"space":"mbv3","stem":{"width":16},"stages":[{"depth":1,"width":16,"kernel":3,"group":8,"attention":true,"colour":1}]}"#;
    let e = format!("{:#}", Subnet::from_json(text, "bad.json").unwrap_err());
    assert!(e.starts_with("bad.json: not a valid subnet: unknown field `colour`"), "{e}");
    let e = format!("{:#}", Subnet::from_json(r#"{"space":"vgg"}"#, "s.json").unwrap_err());
    assert!(e.contains("s.json") && e.contains("unknown variant `vgg`"), "{e}");
    let e = format!(
        "{:#}",
        Subnet::from_json(r#"{"space":"mbv3","stem":{"width":16},"stages":[{"depth":1,"width":16}]}"#, "m.json")
            .unwrap_err()
    );
    assert!(e.contains("missing field(s) kernel, group, attention"), "{e}");
}

#[test]
fn published_subnets_match_mmpose_within_three_percent() {
    for name in [SpaceName::Mbv3, SpaceName::Resnet50] {
        let p = published(name).unwrap();
        let cost = p.subnet.network(InputSize::DEFAULT).unwrap().cost();
        let flops_err = (cost.gflops() - p.gflops).abs() / p.gflops;
        let params_err = (cost.mparams() - p.mparams).abs() / p.mparams;
        assert!(flops_err < 0.03, "{name}: {:.4} GFLOPs vs {}", cost.gflops(), p.gflops);
        assert!(params_err < 0.03, "{name}: {:.4} M params vs {}", cost.mparams(), p.mparams);
        // MACs alone undercount mmcv's figure by a few percent.
        assert!(cost.macs < cost.flops && (cost.flops - cost.macs) as f64 / (cost.flops as f64) < 0.05);
    }
    // ResNet's published subnet is inside Table 2; MBV3's head is not inside Table 1.
    published(SpaceName::Resnet50).unwrap().subnet.validate().unwrap();
    let e = published(SpaceName::Mbv3).unwrap().subnet.validate().unwrap_err();
    assert_eq!(e.to_string(), "head: width 160 not in {256}");
}

#[test]
fn hrnet_without_attention_is_hrnet_w32() {
    // mmpose's get_flops on td-hm_hrnet-w32 256x192 prints 7.7 GFLOPs, 28.54 M
    // params (docs/en/user_guides/model_analysis.md). The HRNet paper's 7.1 is
    // a different convention.
    let mut s = Subnet::sample(&SearchSpace::get(SpaceName::HrnetW32), Sample::Max);
    s.stages.iter_mut().flat_map(|st| &mut st.branches).for_each(|b| b.attention = false);
    let c = s.network(InputSize::DEFAULT).unwrap().cost();
    assert!((c.mparams() - 28.54).abs() / 28.54 < 0.03, "{}", c.mparams());
    assert!((c.gflops() - 7.7).abs() / 7.7 < 0.03, "{}", c.gflops());
}

#[test]
fn networks_end_in_quarter_resolution_heatmaps() {
    for name in SpaceName::ALL {
        for input in [InputSize::DEFAULT, InputSize::new(128, 96).unwrap(), InputSize::new(64, 64).unwrap()] {
            for how in [Sample::Max, Sample::Min, Sample::Random(11)] {
                let net = Subnet::sample(&SearchSpace::get(name), how).network(input).unwrap();
                let out = net.output_shape();
                assert_eq!((out.c, out.h, out.w), (17, input.height / 4, input.width / 4), "{name} {input}");
                // Names are unique: they are parameter prefixes.
                let names: std::collections::HashSet<&str> = net.nodes.iter().map(|n| n.name.as_str()).collect();
                assert_eq!(names.len(), net.nodes.len());
            }
        }
    }
}

#[test]
fn first_deconv_uses_gcd_of_group_and_input_channels() {
    let mut s = Subnet::sample(&SearchSpace::get(SpaceName::Mbv3), Sample::Min);
    s.head = Some(subnet::HeadChoice { width: 256, group: 256 });
    s.validate().unwrap();
    let net = s.network(InputSize::DEFAULT).unwrap();
    let groups: Vec<u32> = net
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::Conv(c) if c.transposed => Some(c.groups),
            _ => None,
        })
        .collect();
    assert_eq!(groups, vec![gcd(256, 160), 256, 256]);
    assert_eq!(groups[0], 32);
}

#[test]
fn structure_errors_are_reported_not_panicked() {
    let mut s = Subnet::sample(&SearchSpace::get(SpaceName::Resnet50), Sample::Max);
    s.stages[0].branches[0].group = 48; // 640 % 48 != 0 ... stage 1 width 80
    let e = s.network(InputSize::DEFAULT).unwrap_err().to_string();
    assert!(e.starts_with("stage 1: width 80 expansion 1 kernel 5 group 48"), "{e}");
    let mut s = Subnet::sample(&SearchSpace::get(SpaceName::HrnetW32), Sample::Max);
    s.stages[2].depth = 10;
    assert_eq!(
        s.network(InputSize::DEFAULT).unwrap_err().to_string(),
        "stage 3: depth 10 is not a multiple of 4 (HRNet modules have 4 blocks)"
    );
    assert!(InputSize::new(250, 192).is_err());
    assert_eq!("128x96".parse::<InputSize>().unwrap(), InputSize::new(128, 96).unwrap());
    assert!("128by96".parse::<InputSize>().unwrap_err().contains("expected HEIGHTxWIDTH"));
}

#[test]
fn random_weights_cover_every_parameter_with_its_shape() {
    let net = Subnet::sample(&SearchSpace::get(SpaceName::Resnet50), Sample::Random(2))
        .network(InputSize::new(64, 64).unwrap())
        .unwrap();
    let w = Weights::random(&net, 9);
    w.check(&net).unwrap();
    let learnable: u64 = net
        .nodes
        .iter()
        .flat_map(|n| n.param_specs())
        .filter(|p| !p.name.ends_with("running_mean") && !p.name.ends_with("running_var"))
        .map(|p| p.shape.iter().product::<usize>() as u64)
        .sum();
    assert_eq!(learnable, net.cost().params);
    assert_eq!(Weights::random(&net, 9), w);
    let mut broken = w.clone();
    broken.tensors.remove("head.final.bias");
    assert_eq!(broken.check(&net).unwrap_err().to_string(), "weights: missing parameter `head.final.bias`");
}
